"""Your own LLaVA end to end on tiny random towers in transformers format: a CLIP tower and a Llama LM
in separate directories with a tokenizer lacking '<image>' -> assemble -> stage 1 (connector only)
-> export + convert -> stage 2 with LoRA -> export merged: transformers' LlavaForConditionalGeneration
loads it and greedy-generates the tokens jaxlvlm generates for three prompts with images; the
unmerged export loads in peft and generates the same."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from llava_greedy import hf_greedy, jaxlvlm_greedy
from llava_journey_fixtures import colour_image, save_towers, write_jsonl

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
    run(c, str(workdir))


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
    stage0 = root / "stage0"
    argv = ["--vision", str(towers["vision"]), "--llm", str(towers["llm"]), "--out", str(stage0)]
    assert _tool("assemble_llava").main(argv) == 0
    data = f"data={data_dir / 'colours'}"
    _train(f"stage=1,init={stage0},{data},test,batch=8", root / "stage1")
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
                unmerged=unmerged)  # fmt: skip


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
