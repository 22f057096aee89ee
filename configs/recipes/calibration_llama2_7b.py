"""Calibration row: text-only Llama-2-7B pretraining step at MaxText's published v5p setting.

MaxText's MaxText/configs/v5p/llama2_7b.sh (AI-Hypercomputer/maxtext): model_name=llama2-7b,
per_device_batch_size=4, max_target_length=4096, remat_policy=minimal, sized for v5p-512 (256 chips,
4M tokens per step). MaxText publishes no 7B MFU for v5p in its docs; its nearest published figures
are Llama2-70B at 65% MFU on v5p-128 (getting_started/Run_Llama2.md) and a 32B dense model at 71.47%
on v5p-128 (MaxText/configs/v5p/README.md). Compiled here for v5p-128 (64 chips, 4x4x4) at the same
per-device batch and sequence (FSDP: per-device work is the same as on v5p-512).

python -m tools.aot --config configs/recipes/calibration_llama2_7b.py
"""

from __future__ import annotations

from configs.common import base_config
from configs.recipes.llava_common import vicuna

AOT = {
    "topology": "v5p-128",
    "programs": ("train_step",),
    "paper": "MaxText llama2_7b.sh: per-device batch 4, seq 4096, v5p",
    "model": "text",  # config.model.text alone: a CausalLM, no vision tower
}
PER_DEVICE_BATCH = 4
CHIPS = 64


def get_config(arg: str | None = None):
    c = base_config()
    c.mode = "train"
    c.tokenizer = "meta-llama/Llama-2-7b-hf"  # a local HF tokenizer dir of that name
    c.model.text = dict(vicuna("7b"), vocab_size=32000)  # Vicuna-1.5 is Llama-2 shaped
    c.runtime.param_dtype = "float32"
    c.runtime.compute_dtype = "bfloat16"
    c.runtime.scan_layers = True
    # Swept with tools.aot.sweep on v5p-128 (BENCHMARKS.md section 6, variants): fsdp 64 with remat
    # 'dots' is the best that fits (41.5%, 81.0 of 88.5 GiB); full remat 37.5% (25.4 GiB); fsdp 32 x
    # tensor 2 with 'dots' estimates 52.1% but is 0.9 GiB over the chip's HBM, also with a loss
    # chunk of 256 instead of 1024 (54.9%, the same 89.4 GiB).
    c.runtime.remat_text = "dots"
    c.mesh.shape = (1, -1, 1)
    c.data.global_batch_size = PER_DEVICE_BATCH * CHIPS
    c.data.buckets = (4096,)
    c.data.max_images = 0
    c.train.loss_chunk = 1024
    c.eval.enabled = False
    return c
