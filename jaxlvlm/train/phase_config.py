"""Configs of a runner's phases, derived from the run's config (one deep copy per phase)."""

from __future__ import annotations

import copy
from collections.abc import Sequence


def task_specs(config, task: str, key: str = "sources") -> list[dict]:
    """The data.<key> specs whose 'task' is ``task``; none is an error naming the task."""
    specs = [dict(s) for s in getattr(config.data, key) if dict(s).get("task") == task]
    if not specs:
        raise ValueError(f"no data.{key} spec has task {task!r}; every task of the run needs one")
    return specs


def stream_eval_sources(config, tasks: Sequence[str]) -> tuple:
    """The eval specs of every task in ``tasks``, in task order."""
    return tuple(s for t in tasks for s in task_specs(config, t, "eval_sources"))


def phase_config(
    config,
    sources: Sequence[dict],
    steps: int,
    tasks: Sequence[str],
    *,
    eval_sources: Sequence[dict] | None = None,
    freeze: Sequence[str] | None = None,
    lora: bool | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
):
    """A copy of ``config`` that trains ``sources`` for ``steps`` and evaluates every task.

    eval_sources: None = the eval specs of ``tasks`` (stream_eval_sources). freeze / lora / lr /
    weight_decay: None keeps the run's value. The method section is emptied (a phase is plain
    training; the method's pieces come as hooks) and periodic evaluation is off.
    """
    c = copy.deepcopy(config)
    with c.unlocked():
        c.data.sources = tuple(sources)
        c.data.eval_sources = tuple(
            stream_eval_sources(config, tasks) if eval_sources is None else eval_sources
        )
        c.data.tasks = tuple(tasks)
        c.train.steps = int(steps)
        c.train.eval_every = 0
        if freeze is not None:
            c.optim.freeze = tuple(freeze)
        if lora is not None:
            c.lora.enabled = lora
        if lr is not None:
            c.optim.lr = float(lr)
        if weight_decay is not None:
            c.optim.weight_decay = float(weight_decay)
        c.method = type(c.method)()
    return c
