"""CoTBal probe sizes and stopping, per the paper's guidance (VisATB v3; docs/methods.md
section 1(c)).

The guidance: the mini subset holds at least 1k samples and the "large" subset at least 10k
(both capped by what the task has), and every probe trains for at least 100 steps and until its
validation score stops improving. ``ProbeSettings`` holds those numbers with a step cap relative
to the final run, so probes cannot cost more than a chosen fraction of it; the two functions are
what a probe phase calls: how many samples a task contributes, and whether a probe may stop.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from jaxlvlm.train.early_stop import stopped_improving


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    """mini_rate / large_rate: fractions of each task (paper: 1/32, and 1 on Academic, 1/4 on
    M3IT); mini_min_samples / large_min_samples: floors on the subset sizes (paper: 1k, 10k);
    min_steps: the least steps a probe trains (paper: 100); max_steps_ratio: the most steps, as a
    fraction of the final run's steps; eval_every: steps between validation evaluations;
    patience: evaluations without improvement (by more than min_delta) before a probe stops."""

    mini_rate: float = 1 / 32
    large_rate: float = 1.0
    mini_min_samples: int = 1000
    large_min_samples: int = 10000
    min_steps: int = 100
    max_steps_ratio: float = 1.0
    eval_every: int = 50
    patience: int = 2
    min_delta: float = 0.0

    def __post_init__(self):
        if not 0 < self.mini_rate <= self.large_rate <= 1:
            raise ValueError(
                f"need 0 < mini_rate <= large_rate <= 1, got {self.mini_rate}, {self.large_rate}"
            )
        if min(self.mini_min_samples, self.large_min_samples, self.min_steps) < 0:
            raise ValueError("probe sample floors and min_steps must be >= 0")
        if self.max_steps_ratio <= 0 or self.eval_every < 1 or self.patience < 1:
            raise ValueError("need max_steps_ratio > 0, eval_every >= 1 and patience >= 1")


def probe_num_samples(task_size: int, large: bool, settings: ProbeSettings) -> int:
    """Samples of a task in a probe: max(rate * size, floor), at most the task's size.

    large=True: the task's own data in its probe (large_rate, large_min_samples); False: its mini
    subset (mini_rate, mini_min_samples), in the mini model and in every other task's probe.
    """
    rate, floor = (
        (settings.large_rate, settings.large_min_samples)
        if large
        else (settings.mini_rate, settings.mini_min_samples)
    )
    return int(min(task_size, max(math.ceil(rate * task_size), floor)))


def probe_step_cap(final_steps: int, settings: ProbeSettings) -> int:
    """The most steps a probe may train: max(min_steps, ceil(max_steps_ratio * final_steps))."""
    return max(settings.min_steps, math.ceil(settings.max_steps_ratio * final_steps))


def probe_should_stop(
    step: int, val_scores: Sequence[float], final_steps: int, settings: ProbeSettings
) -> bool:
    """Whether a probe stops after ``step`` steps, given its validation scores so far.

    val_scores: one higher-is-better score per evaluation (every eval_every steps), oldest first.
    Never before min_steps; always at the step cap; otherwise once the last ``patience``
    evaluations did not beat the best one before them by more than min_delta.
    """
    if step < settings.min_steps:
        return False
    if step >= probe_step_cap(final_steps, settings):
        return True
    return stopped_improving(val_scores, settings.patience, settings.min_delta)
