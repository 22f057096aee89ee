"""LLaVA-1.5-7B stage 2 (visual instruction tuning): connector + LLM on llava_v1_5_mix665k, global
batch 128, 2048 tokens, lr 2e-5 (Liu et al. 2023, Table 9 / scripts/v1_5/finetune.sh). Sized for
v5p-32 (16 chips).

python -m tools.aot --config configs/recipes/llava15_7b_stage2.py
"""

from __future__ import annotations

from configs.recipes.llava_common import recipe

AOT = {
    "topology": "v5p-32",
    "programs": ("train_step", "prefill", "decode_step"),
    "paper": "LLaVA-1.5-7B stage 2: full fine-tune, batch 128, 2048 tokens",
}


def get_config(arg: str | None = None):
    c = recipe("7b", 2, arg=arg)
    # Found with tools.aot on v5p-32 (BENCHMARKS.md section 6, variants): fsdp 4 x tensor 4 cut the
    # all-reduce traffic 3x against fsdp 16 (est. MFU 28.5% vs 26.4%); remat 'dots' needs 392 GiB.
    c.mesh.shape = (1, 4, 4)
    return c
