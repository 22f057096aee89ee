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
    shrink_for_test,
)


def use_small_builtin_model(c):
    """The recipes' small LVLM for the built-in suite: CLIP-style ViT (2 layers, width 128, 32-pixel
    images, 16 image tokens) -> connector -> Llama-style decoder (3 layers, width 128, GQA)."""
    c.model.vision = dict(
        style="clip",
        image_size=32,
        patch_size=8,
        hidden_size=128,
        intermediate_size=256,
        num_layers=2,
        num_heads=4,
    )
    c.model.text = dict(
        arch="llama",
        vocab_size=0,  # the tokenizer's
        hidden_size=128,
        intermediate_size=384,
        num_layers=3,
        num_heads=4,
        num_kv_heads=2,
        max_position_embeddings=512,
    )
    return c


__all__ = [
    "CPU_PEAK_FLOPS",
    "base_config",
    "parse_arg",
    "shrink_for_test",
    "use_small_builtin_model",
]
