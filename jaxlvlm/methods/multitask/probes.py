"""CoTBal's probe plan: which data the mini model, each task's probe and the STL references train on.

The mini model trains every task at mini_rate; the probe of task i trains task i at large_rate and
the others at mini_rate (docs/methods.md section 1); sources are subsampled through their 'num'. The
probes are evaluated on validation sources (the eval sources with split 'val' unless given).
"""

from __future__ import annotations

from collections.abc import Sequence

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


def scaled(spec: dict, rate: float, what: str) -> dict:
    """``spec`` with its 'num' scaled by ``rate`` (at least 1)."""
    if "num" not in spec:
        raise ValueError(
            f"the CoTBal probe phase subsamples sources by their 'num'; {what} spec {spec} has none "
            "(give 'num', or pass config.method.cotbal_file to skip the probes)"
        )
    return dict(spec, num=max(1, int(round(int(spec["num"]) * rate))))


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
    plan = {"mini": [scaled(x, s.mini_rate, t) for t in task_names for x in specs[t]]}
    for t in task_names:
        if t in s.unbalanced:
            continue
        large = [scaled(x, s.large_rate, t) for x in specs[t]]
        others = [scaled(x, s.mini_rate, o) for o in task_names if o != t for x in specs[o]]
        plan[t] = large + others
    return plan
