"""Continual LLaVA at 7B: frozen LLaVA-1.5-7B, a pool of low-rank increments on every decoder
layer's o_proj, N = 30 entries, top-M = 5, rank R = 8 (docs/methods.md section 2(c): the paper gives no values,
these are the project's choices), 8 task slots; batch 128 at 2048 tokens. Sized for v5p-16 (8 chips).

python -m tools.aot --config configs/recipes/continual_llava_7b.py
"""

from __future__ import annotations

from configs.recipes.llava_common import recipe

AOT = {
    "topology": "v5p-16",
    "programs": ("pool_step",),
    "paper": "Continual LLaVA: pool on all 32 o_proj, N=30, M=5, R=8, batch 128",
}


def get_config(arg: str | None = None):
    c = recipe("7b", 2, arg=arg)
    c.mode = "continual"
    c.optim.freeze = ("vision/.*", "llm/.*", "connector/.*")
    c.optim.lr = 2e-4
    c.method.pool_size = 30
    c.method.top_m = 5
    c.method.pool_rank = 8
    c.method.max_tasks = 8
    # The pool's own forward_fn cannot use the chunked LM head (jaxlvlm.train.chunked_loss).
    c.train.loss_chunk = 0
    # Swept with tools.aot.sweep on v5p-16 (BENCHMARKS.md section 6, variants): the decoder's remat
    # 'dots' at batch 128 does not fit (libtpu: 106.9 GiB of 95.7); with 2 micro-batches of 64
    # (same global batch) it fits at 72.2 of 88.5 GiB per chip with the best estimated MFU, 51.3%
    # (step 5.82 s) against full remat's 46.8% (6.38 s, 47.5 GiB).
    c.runtime.remat_text = "dots"
    c.train.grad_accum = 2
    return c
