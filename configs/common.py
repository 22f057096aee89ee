"""Shared pieces for config files: the schema with defaults, typed colon arguments, shrinks.

A config file::

    from configs.common import base_config, parse_arg, shrink_for_test

    def get_config(arg=None):
        a = parse_arg(arg, test=False, steps=300)
        c = base_config()
        c.train.steps = a.steps
        ...
        return shrink_for_test(c) if a.test else c

Run it with ``python -m jaxlvlm.main --config configs/x.py:test,steps=5 --workdir DIR`` and override
any key with ``--config.train.batch_size=32``. The schema itself lives in
jaxlvlm/train/config_schema.py so validation does not depend on this directory being importable.
"""

from jaxlvlm.train.config_schema import (
    CPU_PEAK_FLOPS,
    base_config,
    parse_arg,
    set_model_size,
    shrink_for_test,
)


def use_small_builtin_model(c):
    """The recipes' small LVLM for the built-in suite: CLIP-style ViT (2 layers, width 128, 32-pixel
    images, 16 image tokens) -> connector -> Llama-style decoder (3 layers, width 128, GQA)."""
    return set_model_size(c, "small")


# Full training of a comparison's base from scratch (at 2e-3 it never learns to read images).
BASE_LR = 5e-4


def use_trained_base(c, sources, steps: int, eval_every: int, lr: float = BASE_LR):
    """The base every approach of a comparison starts from: trained on ``sources`` (data specs)
    until its validation score on them stops improving (checked every ``eval_every`` steps, 2
    checks of patience), at most ``steps``; ``eval_every`` 0 = exactly ``steps``."""
    c.method.base_steps = steps
    c.method.base_lr = lr
    c.method.base_eval_every = eval_every
    c.method.base_patience = 2
    c.method.base_sources = tuple(sources)
    return c


def shrink_base_for_test(c, steps: int):
    """The ``:test`` shrink of ``use_trained_base``: 16 samples per source, ``steps`` steps, no
    validation."""
    c.method.base_sources = tuple(dict(s, num=16) for s in c.method.base_sources)
    c.method.base_steps = steps
    c.method.base_eval_every = 0
    return c


__all__ = [
    "BASE_LR",
    "CPU_PEAK_FLOPS",
    "base_config",
    "parse_arg",
    "set_model_size",
    "shrink_base_for_test",
    "shrink_for_test",
    "use_small_builtin_model",
    "use_trained_base",
]
