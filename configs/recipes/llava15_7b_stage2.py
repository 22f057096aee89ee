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
    # Swept with tools.aot.sweep on v5p-32 under the trainer's jax.set_mesh context (BENCHMARKS.md
    # section 6, variants): fsdp 16 with the decoder's remat 'dots' has the best estimated MFU
    # that fits (67.9%, 72.8 of 88.5 GiB per chip); fsdp 16 with full remat 53.1% (26.2 GiB),
    # fsdp 8 x tensor 2 44.3% (its tensor split all-reduces 41 GiB per step). The former choice,
    # fsdp 8 x tensor 2, was made when the trainer's activation constraints were inactive.
    c.mesh.shape = (1, 16, 1)
    c.runtime.remat_text = "dots"
    return c
