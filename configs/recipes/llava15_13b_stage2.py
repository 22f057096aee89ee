"""LLaVA-1.5-13B stage 2 (visual instruction tuning): connector + LLM on llava_v1_5_mix665k, global
batch 128, 2048 tokens, lr 2e-5 (Liu et al. 2023, Table 9 / scripts/v1_5/finetune.sh). Sized for
v5p-64 (32 chips).

python -m tools.aot --config configs/recipes/llava15_13b_stage2.py
"""

from __future__ import annotations

from configs.recipes.llava_common import recipe

AOT = {
    "topology": "v5p-64",
    "programs": ("train_step", "prefill", "decode_step"),
    "paper": "LLaVA-1.5-13B stage 2: full fine-tune, batch 128, 2048 tokens",
}


def get_config(arg: str | None = None):
    return recipe("13b", 2, arg=arg)
