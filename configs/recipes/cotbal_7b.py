"""CoTBal's final run at 7B: LLaVA-1.5-7B full fine-tune on the 665K mixture with per-task loss
weights (lr 2e-5, cosine, warm-up 3%, batch 16/GPU x 8 = 128, max length 2048; the authors'
scripts, docs/methods.md section 1(c)); the Academic benchmark's 7 balanced tasks. Sized for v5p-32 (16 chips).

Only the final weighted run is compiled here (the probes are shorter runs of the same step).
python -m tools.aot --config configs/recipes/cotbal_7b.py
"""

from __future__ import annotations

from configs.recipes.llava_common import recipe

AOT = {
    "topology": "v5p-32",
    "programs": ("cotbal_step",),
    "paper": "CoTBal final run: LLaVA-1.5-7B full FT, 7 weighted tasks, batch 128, 2048 tokens",
}
TASKS = ("conversation", "detail", "reasoning", "vqa", "ocr_vqa", "grounding", "text_only")


def get_config(arg: str | None = None):
    c = recipe("7b", 2, arg=arg)
    c.mode = "multitask"
    c.data.tasks = TASKS
    # Swept with tools.aot.sweep on v5p-32 (BENCHMARKS.md section 6, variants): the decoder's remat
    # 'dots' fits (72.8 of 88.5 GiB per chip) with the best estimated MFU, 67.9% against 53.1%
    # for full remat (26.2 GiB); fsdp over all 16 chips, as the 7B stage 2 sweep found best.
    c.runtime.remat_text = "dots"
    return c
