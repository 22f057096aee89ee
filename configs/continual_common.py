"""Shared body of the continual stream configs (configs/continual_{domain,capability,dataset}.py).

Colon arguments of every stream config: test (tiny, 2 steps per task), approach=continual_llava|
seq_ft|seq_lora|replay|joint, order=0|1|2 (task order: 0 canonical, 1 reversed, 2 rotated by one),
steps=N (per task), num=N (train samples per task), eval_num=N, base_steps=N.
"""

from __future__ import annotations

from configs.common import base_config, parse_arg, shrink_for_test, use_small_builtin_model

# Full fine-tuning of the trained base at 3e-4 (at 1e-3 and above the small decoder stops reading the
# image tokens, see configs/demo.py). The low-rank approaches train only rank-4/8 o_proj increments on
# the frozen base: at 1e-3 neither left chance on the first digits task in 150 steps (loss flat at
# 0.75); at 5e-3 sequential LoRA reached 25-32% after the first task but the pool stayed at chance
# (its entries are mixed by similarity weights summing to 1, without LoRA's alpha/rank = 2 scale, and
# are rank 4); at 2e-2 the pool reached 23-28% after the first task.
APPROACH_LR = {
    "continual_llava": 2e-2,
    "seq_ft": 3e-4,
    "seq_lora": 5e-3,
    "replay": 3e-4,
    "joint": 3e-4,
}
# The base phase is the same for every approach (so runs can share it, see stream_config).
BASE_LR = 5e-4


def ordered(tasks: list, order: int) -> list:
    if order == 0:
        return list(tasks)
    if order == 1:
        return list(reversed(tasks))
    if order == 2:
        return list(tasks[1:]) + list(tasks[:1])
    raise ValueError(f"order={order}: use 0 (canonical), 1 (reversed) or 2 (rotated)")


def stream_config(arg, stream: list[tuple[str, str]], base: list[tuple[str, str]]):
    """stream / base: (family, domain) pairs; task names follow the suite ('counting-noisy')."""
    a = parse_arg(
        arg,
        test=False,
        approach="continual_llava",
        order=0,
        steps=150,
        num=1500,
        eval_num=60,
        base_steps=800,
    )
    from jaxlvlm.data.builtin.registry import task_name

    c = base_config()
    c.mode = "continual"
    stream = ordered(stream, a.order)
    names = [task_name(f, d) for f, d in stream]
    c.data.sources = tuple(
        dict(type="builtin", family=f, domain=d, split="train", num=a.num, task=task_name(f, d))
        for f, d in stream
    )
    c.data.eval_sources = tuple(
        dict(type="builtin", family=f, domain=d, split="test", num=a.eval_num, task=task_name(f, d))
        for f, d in stream
    )
    c.data.tasks = tuple(names)
    c.data.global_batch_size = 32
    c.data.eval_batch_size = 60
    c.data.buckets = (96,)
    c.data.max_images = 2  # digit_pair (a base family) shows two images in half its samples
    use_small_builtin_model(c)
    c.model.vision_feature_layer = -1
    c.train.steps = a.steps
    c.train.log_every = 25
    c.train.checkpoint_every = 50
    c.optim.lr = APPROACH_LR[a.approach]
    c.optim.warmup_steps = 10
    c.optim.end_lr_ratio = 0.1
    c.lora.targets = ("o_proj",)
    c.lora.rank = 8
    c.lora.alpha = 16.0
    c.eval.max_new_tokens = 6
    c.method.approach = a.approach
    c.method.stream = tuple(names)
    c.method.base_steps = a.base_steps
    c.method.base_lr = BASE_LR
    c.method.base_sources = tuple(
        dict(type="builtin", family=f, domain=d, split="train", num=4 * a.num, task=task_name(f, d))
        for f, d in base
    )
    c.method.pool_size = 12
    c.method.top_m = 3
    c.method.pool_rank = 4
    c.method.align_steps = 20
    c.method.replay_per_task = 64
    if a.test:
        c = shrink_for_test(c)
        c.data.sources = tuple(dict(s, num=16) for s in c.data.sources)
        c.data.eval_sources = tuple(dict(s, num=4) for s in c.data.eval_sources)
        c.data.buckets = (96,)
        c.data.eval_batch_size = 8
        c.method.base_sources = tuple(dict(s, num=16) for s in c.method.base_sources)
        c.method.base_steps = 2 if a.base_steps else 0
        c.method.pool_size = 4
        c.method.top_m = 2
        c.method.pool_rank = 2
        c.method.align_steps = 2
        c.method.replay_per_task = 4
    return c
