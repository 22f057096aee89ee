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
    c = recipe("13b", 2, arg=arg)
    # Swept with tools.aot.sweep on v5p-64 (BENCHMARKS.md section 6, variants): the decoder's remat
    # 'dots' fits (54.6 of 88.5 GiB per chip) with the best estimated MFU, 83.4% (step 1.72 s)
    # against full remat's 58.6% (2.44 s, 21.1 GiB). XLA's FLOPs for the 'dots' step (2.0e14 per
    # device) are below even one forward of the model, so its absolute MFU is not credible; the
    # time ratio, 0.70, is about what dropping the recomputed forward should give.
    c.runtime.remat_text = "dots"
    return c
