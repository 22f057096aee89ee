"""LLaVA-1.5-7B stage 1 (feature alignment): connector only on LCS-558K, global batch 256, 2048
tokens, lr 1e-3 (Liu et al. 2023, Table 9 / scripts/v1_5/pretrain.sh). Sized for v5p-32 (16 chips).

python -m tools.aot --config configs/recipes/llava15_7b_stage1.py
"""

from __future__ import annotations

from configs.common import parse_arg
from configs.recipes.llava_common import llava15_config, stage1

AOT = {
    "topology": "v5p-32",
    "programs": ("train_step",),
    "paper": "LLaVA-1.5-7B stage 1: connector only, batch 256, 2048 tokens",
}


def get_config(arg: str | None = None):
    a = parse_arg(arg, data="blip_laion_cc_sbu_558k.json", images="LLaVA-Pretrain/images")
    c = stage1(llava15_config("7b", a.data, a.images), global_batch=256)
    c.mesh.shape = (1, -1, 1)
    return c
