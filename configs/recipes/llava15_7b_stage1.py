"""LLaVA-1.5-7B stage 1 (feature alignment): connector only on LCS-558K, global batch 256, 2048
tokens, lr 1e-3 (Liu et al. 2023, Table 9 / scripts/v1_5/pretrain.sh). Sized for v5p-32 (16 chips).

python -m tools.aot --config configs/recipes/llava15_7b_stage1.py
"""

from __future__ import annotations

from configs.recipes.llava_common import recipe

AOT = {
    "topology": "v5p-32",
    "programs": ("train_step",),
    "paper": "LLaVA-1.5-7B stage 1: connector only, batch 256, 2048 tokens",
}


def get_config(arg: str | None = None):
    return recipe("7b", 1, arg=arg)
