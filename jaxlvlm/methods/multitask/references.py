"""The single-task references of dI / dE (docs/methods.md section 5.1): one model per task.

Two budgets, because they answer different questions: at equal total steps (each reference trains
as many steps as the multi-task run: what a task reaches alone given the whole budget), and at equal
per-task exposure (each reference trains for its task's share of the multi-task run's samples: what
the other tasks add to the same samples of this task).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def task_shares(config, task_names: Sequence[str]) -> np.ndarray:
    """[T] each task's share of the multi-task run's training samples (sums to 1).

    A weighted mixture (a 'weight' on every source) samples by weight; otherwise the sources are
    concatenated and shuffled, so a task's share is its number of samples ('num' of its specs).
    """
    specs = [dict(s) for s in config.data.sources]
    index = {t: i for i, t in enumerate(task_names)}
    weighted = all("weight" in s for s in specs)
    key = "weight" if weighted else "num"
    missing = [s for s in specs if key not in s]
    if missing:
        raise ValueError(
            f"equal-exposure references (config.method.stl_exposure) need the task shares of the "
            f"multi-task run: source {missing[0]} has no 'num' (or give a 'weight' on every source)"
        )
    mass = np.zeros(len(task_names))
    for s in specs:
        mass[index[s["task"]]] += float(s[key])
    if mass.sum() <= 0:
        raise ValueError(f"data.sources give no training samples to share: {specs}")
    return mass / mass.sum()


def exposure_steps(total_steps: int, shares: np.ndarray) -> list[int]:
    """Steps per task at equal exposure: round(total_steps x share), at least 1."""
    return [max(1, int(math.floor(total_steps * float(s) + 0.5))) for s in shares]
