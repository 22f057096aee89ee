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
    # Found with tools.aot on v5p-32 (BENCHMARKS.md section 6, variants): fsdp 8 x tensor 2 had the
    # best estimated MFU that fits (29.8%; fsdp 4 x tensor 4 28.5%, fsdp 16 26.4%, batch 256 27.3%);
    # remat 'dots' needs 392 GiB per chip.
    c.mesh.shape = (1, 8, 2)
    return c
