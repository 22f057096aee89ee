"""Adapt-inf at 7B: LLaVA-1.5-7B with LoRA r = 128, alpha = 256 on every decoder projection; the
per-sample features are the gradients of decoder layer 31's LoRA, Rademacher-projected to k = 8192
(docs/methods.md section 3(c)), plus the scorers' two forwards; the selected data trains the LoRA step. Features
32 rows at a time, training batch 128, 2048 tokens. Sized for v5p-32 (16 chips).

python -m tools.aot --config configs/recipes/adapt_inf_7b.py
"""

from __future__ import annotations

from configs.recipes.llava_common import recipe

AOT = {
    "topology": "v5p-32",
    "programs": ("sample_features", "train_step"),
    "paper": "Adapt-inf: LoRA 128 all projections, layer-31 gradients projected to 8192",
}


def get_config(arg: str | None = None):
    c = recipe("7b", 2, lora_rank=128, arg=arg)
    c.mode = "lifelong"
    c.method.proj_dim = 8192
    c.method.grad_layer = 31
    # Per-sample gradients are vmapped: 128 rows at once needed 96 GiB per chip (bench_results).
    c.method.feature_batch = 32
    # Swept with tools.aot.sweep on v5p-32 (BENCHMARKS.md section 6, variants): grad_mode 'mixture'
    # (one batched pass, a LoRA copy per row) cuts the feature pass's all-gathers from 23,506 to
    # 12.7 GiB per call but needs 87.7 of 88.5 GiB per chip and estimates 19.3% (its rank-B*R LoRA
    # doubles XLA's FLOPs) against 'vmap' at 20.2 GiB and 20.4%, so 'vmap' (the runner's default,
    # set here so a sweep can override it) is kept.
    c.method.grad_mode = "vmap"
    return c
