"""Pilot's client step at 7B: frozen CLIP ViT-L/14-336 + Vicuna-7B, stage-1 connector (task adapter
+ client adapter, difference loss 0.1), LLM LoRA rank 64, alpha 128 (docs/methods.md section 4(c)); one client's
local step at batch 16, 2048 tokens (the clients of a round run this step each). Sized for v5p-8
(4 chips).

python -m tools.aot --config configs/recipes/pilot_client_7b.py
"""

from __future__ import annotations

from configs.recipes.llava_common import recipe

AOT = {
    "topology": "v5p-8",
    "programs": ("pilot_client_step",),
    "paper": "Pilot stage-1 client step: adapters + LoRA r64 a128, batch 16, 2048 tokens",
}


def get_config(arg: str | None = None):
    c = recipe("7b", 2, lora_rank=64, arg=arg)
    c.data.global_batch_size = 16
    c.mode = "federated"
    c.model.connector = "pilot_stage1"
    # Swept with tools.aot.sweep on v5p-8 (BENCHMARKS.md section 6, variants): fsdp 4 with the
    # decoder's remat 'dots' has the best estimated MFU that fits, 41.4% (65.0 of 88.5 GiB per
    # chip, step 1.81 s) against full remat's 37.3% (22.8 GiB, 2.00 s); data parallel over the 4
    # chips (frozen weights replicated, no all-gathers) estimates 27.7% (51.2 GiB, 2.70 s).
    c.runtime.remat_text = "dots"
    return c
