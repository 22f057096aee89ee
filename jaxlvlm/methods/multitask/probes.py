"""CoTBal's probe plan: which data the mini model, each task's probe and the STL references train on,
and when a probe stops.

The mini model trains every task's mini subset; the probe of task i trains task i's large subset and
the others' mini subsets (docs/methods.md section 1). Subset sizes follow the paper's guidance
(jaxlvlm.methods.cotbal_probes.probe_num_samples: a rate with a floor, capped by the task's size);
sources are subsampled through their 'num'. The probes are evaluated on validation sources (the
eval sources with split 'val' unless given), and stop when their validation score stops improving.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from jaxlvlm.methods.cotbal_probes import ProbeSettings, probe_num_samples, probe_should_stop
from jaxlvlm.methods.multitask.settings import MultitaskSettings


def task_source_specs(config, task_names: Sequence[str]) -> dict[str, list[dict]]:
    """{task: its data.sources specs}; every spec must name a task of the run."""
    specs: dict[str, list[dict]] = {t: [] for t in task_names}
    for spec in config.data.sources:
        spec = dict(spec)
        if not spec.get("task"):
            raise ValueError(
                f"mode 'multitask' needs a 'task' key on every data source spec: {spec}"
            )
        if spec["task"] not in specs:
            raise ValueError(
                f"data source task {spec['task']!r} is not in data.tasks {list(task_names)}"
            )
        specs[spec["task"]].append(spec)
    return specs


def subset(specs: Sequence[dict], large: bool, ps: ProbeSettings, task: str) -> list[dict]:
    """A task's specs with their 'num' scaled so that together they hold the task's mini (or,
    ``large``, its large) subset size; each spec keeps at least one sample."""
    missing = [spec for spec in specs if "num" not in spec]
    if missing:
        raise ValueError(
            f"the CoTBal probe phase subsamples sources by their 'num'; task {task!r} spec "
            f"{missing[0]} has none (give 'num', or pass config.method.cotbal_file to skip the probes)"
        )
    size = sum(int(spec["num"]) for spec in specs)
    n = probe_num_samples(size, large, ps)
    return [dict(spec, num=max(1, round(int(spec["num"]) * n / max(size, 1)))) for spec in specs]


def validation_sources(config, s: MultitaskSettings) -> tuple:
    """The probes' validation specs: method.val_sources, else the eval specs with split 'val'."""
    if s.val_sources:
        return tuple(dict(v) for v in s.val_sources)
    out = []
    for spec in config.data.eval_sources or config.data.sources:
        spec = dict(spec)
        if spec.get("type") == "builtin":
            spec["split"] = "val"
        out.append(spec)
    return tuple(out)


def probe_plan(config, task_names: Sequence[str], s: MultitaskSettings) -> dict[str, list[dict]]:
    """{'mini': sources, task: sources of its probe, ...} in task order.

    A task with a fixed weight (method.unbalanced, e.g. text-only data) gets no probe: the
    authors' weighting script has no column for it (VisATB weighting_visatb.py weights only the
    balanced tasks); it still trains in every probe at mini_rate, as in the final run.
    """
    specs = task_source_specs(config, task_names)
    ps = s.probe_settings()
    mini = {t: subset(specs[t], False, ps, t) for t in task_names}
    plan = {"mini": [x for t in task_names for x in mini[t]]}
    for t in task_names:
        if t in s.unbalanced:
            continue
        others = [x for o in task_names if o != t for x in mini[o]]
        plan[t] = subset(specs[t], True, ps, t) + others
    return plan


def probe_early_stop(
    name: str, task_names: Sequence[str], s: MultitaskSettings, final_steps: int
) -> Callable[[int, list[dict]], bool]:
    """The stopping rule of probe ``name`` for run_phase: its validation score is its own task's
    score (the mini model's: the mean over the balanced tasks), stop per probe_should_stop."""
    ps = s.probe_settings()
    watched = [name] if name != "mini" else [t for t in task_names if t not in s.unbalanced]

    def stop(step: int, evals: list[dict]) -> bool:
        scores = [float(np.mean([e[t] for t in watched])) for e in evals]
        return probe_should_stop(step, scores, final_steps, ps)

    return stop
