"""Deliberately too big: LLaVA-1.5-13B full fine-tune (stage 2 settings) on v5e-8 (8 chips of 16 GB).

fp32 master weights and AdamW state alone are 13B x 16 bytes = 208 GB, 26 GB per chip: tools.aot
must report it as not fitting, with the shortfall, instead of crashing.

python -m tools.aot --config configs/recipes/too_big_13b_full_v5e8.py
"""

from __future__ import annotations

from configs.recipes.llava_common import recipe

AOT = {
    "topology": "v5e-8",
    "programs": ("train_step",),
    "paper": "LLaVA-1.5-13B stage 2 full fine-tune, batch 128, on 8 x 16 GB (does not fit)",
}


def get_config(arg: str | None = None):
    c = recipe("13b", 2, arg=arg)
    c.data.global_batch_size = 8
    return c
