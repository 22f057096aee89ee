"""The base model every approach of a comparison starts from, and its scores before any task.

All approaches of one config (a method and its baselines) must start from the same parameters:
``base_params`` trains them once in <workdir>/base (a resumable phase) or takes config.init_from /
the model's init; ``base_scores`` evaluates them on every task once (<workdir>/base_scores.json).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxlvlm.files import PathLike, read_json, run_path, write_json_atomic
from jaxlvlm.train import run_setup as RS
from jaxlvlm.train import setup as S
from jaxlvlm.train.early_stop import stopped_improving
from jaxlvlm.train.phase import run_phase, scores_vector
from jaxlvlm.train.phase_config import phase_config, task_specs


def base_phase_config(config, tasks: Sequence[str], base):
    """The base phase's config: base.base_sources for base.base_steps, every task of the run (then
    the base tasks) named, validated every base.base_eval_every steps when > 0. Two runs whose base
    phase configs agree (fingerprint) train the same base and may share it."""
    sources = [dict(s) for s in base.base_sources]
    all_tasks = tuple(dict.fromkeys([*tasks, *(s["task"] for s in sources)]))
    validate = base.base_eval_every > 0
    c = phase_config(
        config,
        sources,
        base.base_steps,
        all_tasks,
        eval_sources=base.base_validation() if validate else (),
        lora=False,
        lr=base.base_lr if base.base_lr > 0 else None,
    )
    if validate:
        c.train.eval_every = base.base_eval_every
    return c


def base_params(config, workdir: PathLike, tasks: Sequence[str], base) -> Any:
    """Model parameters (sharded): trained on base.base_sources for base.base_steps when > 0,
    else config.init_from's parameters or the model's own init (config.seed).

    base: a method's settings with the BaseModelSettings fields.
    """
    if base.base_steps <= 0:
        c = phase_config(config, task_specs(config, tasks[0]), 0, tasks, lora=False)
        run = RS.prepare_run(c, workdir)
        setup = S.plan_train_state(run.model, run.model_cfg, c, run.mesh, run.rules)
        if config.init_from:
            return RS.load_init_params(run, setup)
        return setup.create().params
    c = base_phase_config(config, tasks, base)
    validate = base.base_eval_every > 0
    stop = None
    if validate:
        watched = sorted({s["task"] for s in base.base_validation()})

        def stop(step: int, evals: list[dict]) -> bool:
            means = [float(np.mean([e[t] for t in watched])) for e in evals]
            return stopped_improving(means, base.base_patience)

    res = run_phase(c, run_path(workdir) / "base", evaluate=validate, early_stop=stop)
    if validate:
        logging.info("base model: %d of at most %d steps, validation %s", res.steps,
                     base.base_steps, res.scores)  # fmt: skip
    return res.state.params


def base_scores(
    config, workdir: PathLike, tasks: Sequence[str], params: Any, base
) -> np.ndarray | None:
    """[T] scores (0-100) of the base model on every task, or None when base.evaluate_base is off."""
    if not base.evaluate_base:
        return None
    path = run_path(workdir) / "base_scores.json"
    saved = read_json(path)
    if saved is not None:
        return _in_order(saved, list(tasks), path)
    c = phase_config(config, task_specs(config, tasks[0]), 0, tasks, lora=False)
    res = run_phase(c, run_path(workdir) / "base_eval", init_params=params, need_state=False)
    b = scores_vector(res.scores, list(tasks))
    if jax.process_index() == 0:
        write_json_atomic(path, {"tasks": list(tasks), "scores": b.tolist()}, what="base scores")
    return b


def _in_order(saved: dict, tasks: list[str], path) -> np.ndarray:
    """[T] saved base scores in the order of ``tasks`` (a base shared by a run whose stream has the
    same tasks in another order, e.g. the reversed task order of a continual stream)."""
    saved_tasks = list(saved.get("tasks") or tasks)
    if sorted(saved_tasks) != sorted(tasks):
        raise ValueError(
            f"{path}: base scores of tasks {saved_tasks}, but this run's tasks are {tasks}; "
            "a base's scores can only be shared by runs over the same tasks"
        )
    by_task = dict(zip(saved_tasks, saved["scores"], strict=True))
    return np.asarray([by_task[t] for t in tasks])
