"""LLaVA-1.5-13B stage 2 with LoRA: rank 128, alpha 256 on every decoder projection, lr 2e-4
(connector 2e-5), global batch 128, 2048 tokens (scripts/v1_5/finetune_lora.sh). Sized for v5p-32
(16 chips).

python -m tools.aot --config configs/recipes/llava15_13b_stage2_lora.py
"""

from __future__ import annotations

from configs.recipes.llava_common import recipe

AOT = {
    "topology": "v5p-32",
    "programs": ("train_step",),
    "paper": "LLaVA-1.5-13B stage 2: LoRA r128 a256, batch 128, 2048 tokens",
}


def get_config(arg: str | None = None):
    return recipe("13b", 2, lora_rank=128, arg=arg)
