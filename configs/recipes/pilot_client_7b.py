"""Pilot's client step at 7B: frozen CLIP ViT-L/14-336 + Vicuna-7B, stage-1 connector (task adapter
+ client adapter, difference loss 0.1), LLM LoRA rank 64, alpha 128 (METHODS.md 4(c)); one client's
local step at batch 16, 2048 tokens (the clients of a round run this step each). Sized for v5p-8
(4 chips).

python -m tools.aot --config configs/recipes/pilot_client_7b.py
"""

from __future__ import annotations

from configs.common import parse_arg
from configs.recipes.llava_common import llava15_config, stage2

AOT = {
    "topology": "v5p-8",
    "programs": ("pilot_client_step",),
    "paper": "Pilot stage-1 client step: adapters + LoRA r64 a128, batch 16, 2048 tokens",
}


def get_config(arg: str | None = None):
    a = parse_arg(arg, data="llava_v1_5_mix665k.json", images="data")
    c = stage2(llava15_config("7b", a.data, a.images), global_batch=16, lora_rank=64)
    c.mode = "federated"
    c.model.connector = "pilot_stage1"
    c.mesh.shape = (1, -1, 1)
    return c
