"""config.method of mode 'multitask': the weightings compared and CoTBal's probe phase."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from jaxlvlm.errors import ConfigError
from jaxlvlm.methods import task_weighting as tw
from jaxlvlm.methods.cotbal_probes import ProbeSettings
from jaxlvlm.methods.settings import BaseModelSettings, require


@dataclasses.dataclass(frozen=True)
class MultitaskSettings(BaseModelSettings):
    """weightings: names run one after the other on the same data, budget and seed (final runs);
      empty only when single-task references are asked for (a references-only run).
    tau, alphas: CoTBal temperature ('auto': the lowest that keeps every weight in [0.5, 2]) and
      mix (eqs. 4-5).
    cotbal_file: V/v0 or c_out/c_in/D from a file ('' = run the probe phase).
    probe_steps: > 0: every probe trains exactly this many steps; 0: the paper's guidance (VisATB
      v3): at least probe_min_steps, then until its validation score stops improving
      (probe_eval_every, probe_patience, probe_min_delta), at most probe_max_steps_ratio x
      train.steps (jaxlvlm.methods.cotbal_probes).
    mini_rate, large_rate: data fractions of the mini subsets and of a probe's own task;
      mini_min_samples, large_min_samples: floors on those subsets (paper: 1k, 10k; capped by the
      task's size).
    val_sources: validation specs of the probes (() = eval sources with split 'val').
    unbalanced: task names with a fixed weight 1 (text-only tasks, docs/methods.md section 1(c)).
    dwa_window, dwa_temperature, rlw_seed: the baselines' settings (rlw_seed -1 = the run's seed,
      so runs of different seeds draw different RLW weights).
    stl_steps: > 0 one single-task model per task (the STL reference of dI/dE); 0 = train.steps;
      -1 = none (use stl_file, or report no dI/dE). stl_file: JSON {task: score in [0, 1]}.
    stl_exposure: also one single-task model per task at equal per-task exposure: task t trains
      for its share of the multi-task run's samples (train.steps x n_t / sum n), so it sees as many
      of its samples as in the multi-task run (dI/dE against both references are reported).
    probe_learn_margin: a probe learns its task when V[i, i] - v0[i] >= this (points); the check
      is reported per balanced task (docs/benchmark.md), it changes no weight.
    The base model every run starts from (probes, references and final runs alike):
      BaseModelSettings (base_steps > 0 trains it first in <workdir>/base).
    """

    MODE: ClassVar[str] = "multitask"

    weightings: tuple = ("cotbal",)
    tau: float | str = 0.5
    alphas: tuple = (0.25, 0.25, 0.5)
    cotbal_file: str = ""
    probe_steps: int = 0
    mini_rate: float = 1 / 32
    large_rate: float = 1.0
    mini_min_samples: int = 1000
    large_min_samples: int = 10000
    probe_min_steps: int = 100
    probe_max_steps_ratio: float = 1.0
    probe_eval_every: int = 50
    probe_patience: int = 2
    probe_min_delta: float = 0.0
    val_sources: tuple = ()
    unbalanced: tuple = ()
    dwa_window: int = 25
    dwa_temperature: float = 2.0
    rlw_seed: int = -1
    stl_steps: int = -1
    stl_file: str = ""
    stl_exposure: bool = False
    probe_learn_margin: float = 5.0

    def __post_init__(self):
        require(
            self.tau == "auto" or (not isinstance(self.tau, str) and self.tau > 0),
            f"config.method.tau={self.tau!r}: give a number > 0 or 'auto'",
        )
        bad = [w for w in self.weightings if w not in tw.WEIGHTINGS]
        references_only = self.stl_steps >= 0 and not self.weightings
        require(
            (bool(self.weightings) or references_only) and not bad,
            f"config.method.weightings={self.weightings}: choose from {tw.WEIGHTINGS} (at least "
            "one, or none with config.method.stl_steps >= 0 for a run of the references only)",
        )
        require(
            not self.stl_exposure or self.stl_steps >= 0,
            "config.method.stl_exposure=True needs config.method.stl_steps >= 0 (the references)",
        )
        self.check_base()
        require(self.probe_steps >= 0, f"config.method.probe_steps={self.probe_steps}: need >= 0")
        try:
            self.probe_settings()
        except ValueError as e:
            raise ConfigError(f"config.method (CoTBal probes): {e}") from None

    def probe_settings(self) -> ProbeSettings:
        """The probe sizes and stopping rule (jaxlvlm.methods.cotbal_probes.ProbeSettings)."""
        return ProbeSettings(
            mini_rate=self.mini_rate,
            large_rate=self.large_rate,
            mini_min_samples=self.mini_min_samples,
            large_min_samples=self.large_min_samples,
            min_steps=self.probe_min_steps,
            max_steps_ratio=self.probe_max_steps_ratio,
            eval_every=self.probe_eval_every,
            patience=self.probe_patience,
            min_delta=self.probe_min_delta,
        )
