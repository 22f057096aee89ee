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


__all__ = [
    "CPU_PEAK_FLOPS",
    "base_config",
    "parse_arg",
    "set_model_size",
    "shrink_for_test",
    "use_small_builtin_model",
]
