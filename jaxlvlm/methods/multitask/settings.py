"""config.method of mode 'multitask': the weightings compared and CoTBal's probe phase."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from jaxlvlm.methods import task_weighting as tw
from jaxlvlm.methods.settings import require


@dataclasses.dataclass(frozen=True)
class MultitaskSettings:
    """weightings: names run one after the other on the same data, budget and seed (final runs).
    tau, alphas: CoTBal temperature ('auto': the lowest that keeps every weight in [0.5, 2]) and
      mix (eqs. 4-5).
    cotbal_file: V/v0 or c_out/c_in/D from a file ('' = run the probe phase).
    probe_steps: steps of each probe (0 = train.steps); mini_rate, large_rate: data fractions.
    val_sources: validation specs of the probes (() = eval sources with split 'val').
    unbalanced: task names with a fixed weight 1 (text-only tasks, docs/methods.md section 1(c)).
    dwa_window, dwa_temperature, rlw_seed: the baselines' settings.
    stl_steps: > 0 one single-task model per task (the STL reference of dI/dE); 0 = train.steps;
      -1 = none (use stl_file, or report no dI/dE). stl_file: JSON {task: score in [0, 1]}.
    """

    MODE: ClassVar[str] = "multitask"

    weightings: tuple = ("cotbal",)
    tau: float | str = 0.5
    alphas: tuple = (0.25, 0.25, 0.5)
    cotbal_file: str = ""
    probe_steps: int = 0
    mini_rate: float = 1 / 32
    large_rate: float = 1.0
    val_sources: tuple = ()
    unbalanced: tuple = ()
    dwa_window: int = 25
    dwa_temperature: float = 2.0
    rlw_seed: int = 0
    stl_steps: int = -1
    stl_file: str = ""

    def __post_init__(self):
        require(
            self.tau == "auto" or (not isinstance(self.tau, str) and self.tau > 0),
            f"config.method.tau={self.tau!r}: give a number > 0 or 'auto'",
        )
        bad = [w for w in self.weightings if w not in tw.WEIGHTINGS]
        require(
            bool(self.weightings) and not bad,
            f"config.method.weightings={self.weightings}: choose from {tw.WEIGHTINGS} (at least one)",
        )
        require(
            0 < self.mini_rate <= self.large_rate <= 1,
            f"config.method: need 0 < mini_rate <= large_rate <= 1, got {self.mini_rate}, "
            f"{self.large_rate}",
        )
