"""mode 'train': plain visual instruction tuning (all tasks mixed, uniform token-level loss)."""

from __future__ import annotations

from jaxlvlm.runners.registry import register_runner
from jaxlvlm.train.trainer import run_training


@register_runner("train")
def run_train(config, workdir: str) -> dict:
    """Trains to config.train.steps (resuming from workdir), evaluates, writes the report."""
    return run_training(config, workdir, title="jaxlvlm: visual instruction tuning")
