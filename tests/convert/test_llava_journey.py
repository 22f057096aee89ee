"""Your own LLaVA end to end on tiny random towers in transformers format: a CLIP tower and a Llama LM
in separate directories with a tokenizer lacking '<image>' -> stage 1 (connector only) from the two
towers (configs/llava15.py vision= llm=: assembled at the run's start) -> export + convert -> stage 2
with LoRA -> export merged: transformers' LlavaForConditionalGeneration loads it and greedy-generates
the tokens jaxlvlm generates for three prompts with images; the unmerged export loads in peft and
generates the same. A rerun of stage 1 resumes without assembling again; tools/assemble_llava.py
writes what the run assembled."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from llava_greedy import hf_greedy, jaxlvlm_greedy
from llava_journey_fixtures import colour_image, save_towers, write_jsonl

from jaxlvlm.train.phase import PHASE_FILE

ROOT = Path(__file__).resolve().parents[2]
# The image first, the image after the text, and a second question.
PROMPTS = [
    "<image>\nwhat colour is the square",
    "describe the image\n<image>",
    "<image>\nanswer with one word",
]
NEW_TOKENS = 6


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(arg: str):
    spec = importlib.util.spec_from_file_location("llava15", ROOT / "configs" / "llava15.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def _train(arg: str, workdir: Path, **overrides):
    from jaxlvlm.main import run

    c = _config(arg)
    for key, value in overrides.items():
        section, name = key.split(".")
        c[section][name] = value
    return run(c, str(workdir))


@pytest.fixture(scope="module")
def journey(tmp_path_factory):
    from jaxlvlm.train.run_export import export_run

    root = tmp_path_factory.mktemp("journey")
    towers = save_towers(root)
    jsonl, images = write_jsonl(root, 16)
    data_dir = root / "data"
    _tool("import_llava_data").main(
        ["--data_dir", str(data_dir), "--name", "colours", "--split", f"train={jsonl}"]
        + ["--image_root", str(images)]
    )
    data = f"data={data_dir / 'colours'}"
    stage1_arg = f"stage=1,vision={towers['vision']},llm={towers['llm']},{data},test,batch=8"
    _train(stage1_arg, root / "stage1")
    stage0 = root / "stage1" / "assembled"
    hf1 = root / "hf_stage1"
    export_run(str(root / "stage1"), str(hf1))
    stage1 = root / "stage1_converted"
    assert _tool("convert_checkpoint").main(["--src", str(hf1), "--out", str(stage1)]) == 0
    # A large LoRA lr so two steps move b well away from zero: the merge must matter.
    _train(
        f"stage=2,lora=true,init={stage1},{data},test,batch=8,lora_rank=4,lora_alpha=8,"
        "lora_targets=q_proj+v_proj+o_proj",
        root / "stage2",
        **{"optim.lr": 0.05},
    )
    merged, unmerged = root / "hf_merged", root / "hf_unmerged"
    run = export_run(str(root / "stage2"), str(merged))
    export_run(str(root / "stage2"), str(unmerged), merge=False)
    return dict(root=root, towers=towers, stage0=stage0, hf1=hf1, run=run, merged=merged,
                unmerged=unmerged, stage1_arg=stage1_arg)  # fmt: skip


def _images():
    return [colour_image(c, 100 + i) for i, c in enumerate(("red", "blue", "green"))]


def test_assembly_adds_image_token_and_grows_rows(journey):
    from jaxlvlm.convert import load_converted, load_pretrained
    from jaxlvlm.data.tokenizer import load_tokenizer

    vocab = journey["towers"]["vocab"]
    cfg, params = load_converted(str(journey["stage0"]))
    tok = load_tokenizer(str(journey["stage0"]))
    assert tok.convert_tokens_to_ids("<image>") == vocab == cfg.image_token_id
    assert cfg.text.vocab_size == 320  # 300 + '<image>', rounded up to a multiple of 64
    assert cfg.vision_feature_layer == -2 and cfg.vision_feature_select_strategy == "default"
    _, lm = load_pretrained(str(journey["towers"]["llm"]))
    emb = np.asarray(params["llm"]["embed_tokens"]["embedding"])
    np.testing.assert_array_equal(emb[:vocab], lm["embed_tokens"]["embedding"])
    np.testing.assert_allclose(
        emb[vocab:], np.broadcast_to(emb[:vocab].mean(0), (20, 32)), atol=1e-7
    )
    head = np.asarray(params["llm"]["lm_head"]["kernel"])
    np.testing.assert_allclose(
        head[:, vocab:].T, np.broadcast_to(head[:, :vocab].mean(1), (20, 32)), atol=1e-7
    )


def test_a_stage_1_rerun_resumes_without_assembling_again(journey, monkeypatch):
    from jaxlvlm.train import assembly

    def no_second_assembly(*args, **kwargs):
        raise AssertionError("a rerun assembled the towers again")

    monkeypatch.setattr(assembly, "assemble_towers", no_second_assembly)
    workdir = journey["root"] / "stage1"
    before = {p: p.stat().st_mtime_ns for p in journey["stage0"].rglob("*")}
    # Without its phase record the rerun is a resume: from the step-2 checkpoint, not the towers.
    (workdir / PHASE_FILE).rename(workdir / "phase_first_run.json")
    _train(journey["stage1_arg"], workdir)
    assert json.loads((workdir / PHASE_FILE).read_text())["resumed_from"] == 2
    assert {p: p.stat().st_mtime_ns for p in journey["stage0"].rglob("*")} == before


def test_a_rerun_with_other_towers_is_refused_naming_the_key(journey, tmp_path):
    from jaxlvlm.errors import ConfigError

    arg = journey["stage1_arg"].replace(f"vision={journey['towers']['vision']}", "vision=elsewhere")
    with pytest.raises(ConfigError, match="config.assemble.vision"):
        _train(arg, journey["root"] / "stage1")


def test_checkpoints_without_their_assembled_model_are_refused(journey, tmp_path):
    from jaxlvlm.errors import ConfigError

    (tmp_path / "checkpoints" / "2").mkdir(parents=True)
    with pytest.raises(ConfigError, match="has checkpoints but not the model they started from"):
        _train(journey["stage1_arg"], tmp_path)
    assert not (tmp_path / "assembled").exists()


def test_the_tool_writes_what_the_run_assembled(journey, tmp_path):
    from jaxlvlm.convert import load_converted
    from jaxlvlm.data.tokenizer import load_tokenizer

    towers = journey["towers"]
    argv = ["--vision", str(towers["vision"]), "--llm", str(towers["llm"]), "--out", str(tmp_path)]
    assert _tool("assemble_llava").main(argv) == 0
    cfg, params = load_converted(str(tmp_path))
    run_cfg, run_params = load_converted(str(journey["stage0"]))
    assert cfg == run_cfg
    for a, b in zip(_leaves(params), _leaves(run_params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (
        load_tokenizer(str(tmp_path)).get_vocab()
        == load_tokenizer(str(journey["stage0"])).get_vocab()
    )


def test_stage_1_trains_only_the_connector(journey):
    from jaxlvlm.convert import load_converted, load_pretrained

    _, before = load_converted(str(journey["stage0"]))
    _, after = load_pretrained(str(journey["hf1"]))
    for part in ("vision", "llm"):
        for a, b in zip(_leaves(before[part]), _leaves(after[part]), strict=True):
            np.testing.assert_array_equal(a, b)
    moved = [
        np.abs(a - b).max()
        for a, b in zip(_leaves(before["connector"]), _leaves(after["connector"]), strict=True)
    ]
    assert min(moved) > 0


def _leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_merged_export_generates_like_jaxlvlm(journey):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    run = journey["run"]
    assert all(np.abs(f["b"]).max() > 1e-3 for f in run.lora.values())
    model = LlavaForConditionalGeneration.from_pretrained(journey["merged"]).eval()
    processor = AutoProcessor.from_pretrained(journey["merged"])
    ours = jaxlvlm_greedy(run, PROMPTS, _images(), NEW_TOKENS)
    theirs, hf_ids = hf_greedy(model, processor, PROMPTS, _images(), NEW_TOKENS)
    assert any(len(t) > 1 for t in ours)
    assert ours == theirs
    # The exported processor expands '<image>' to the same placeholders jaxlvlm's pipeline writes.
    assert all(ids.count(run.model_cfg.image_token_id) == 4 for ids in hf_ids)


def test_unmerged_export_loads_in_peft(journey):
    import torch
    from peft import PeftModel
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    base = LlavaForConditionalGeneration.from_pretrained(journey["unmerged"]).eval()
    model = PeftModel.from_pretrained(base, str(journey["unmerged"] / "adapter")).eval()
    b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert len(b) == 2 * 3 and all(float(torch.abs(p).max()) > 1e-3 for p in b)
    processor = AutoProcessor.from_pretrained(journey["unmerged"])
    theirs, _ = hf_greedy(model, processor, PROMPTS, _images(), NEW_TOKENS)
    assert theirs == jaxlvlm_greedy(journey["run"], PROMPTS, _images(), NEW_TOKENS)
