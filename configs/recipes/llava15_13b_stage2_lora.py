"""LLaVA-1.5-13B stage 2 with LoRA: rank 128, alpha 256 on every decoder projection, lr 2e-4
(connector 2e-5), global batch 128, 2048 tokens (scripts/v1_5/finetune_lora.sh). Sized for v5p-32
(16 chips).

python -m tools.aot --config configs/recipes/llava15_13b_stage2_lora.py
"""

from __future__ import annotations

from configs.common import parse_arg
from configs.recipes.llava_common import llava15_config, stage2

AOT = {
    "topology": "v5p-32",
    "programs": ("train_step",),
    "paper": "LLaVA-1.5-13B stage 2: LoRA r128 a256, batch 128, 2048 tokens",
}


def get_config(arg: str | None = None):
    a = parse_arg(arg, data="llava_v1_5_mix665k.json", images="data")
    c = stage2(llava15_config("13b", a.data, a.images), global_batch=128, lora_rank=128)
    c.mesh.shape = (1, -1, 1)
    return c
