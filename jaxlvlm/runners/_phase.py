"""One resumable training phase, the building block of runners that chain several trainings.

A multi-task probe, a task of a continual stream or a final run is a *phase*: a workdir of its own
with its checkpoints (so an interrupted phase resumes at its step) and a ``phase.json`` written when
it is complete (so a rerun skips it and reads its scores). It composes the trainer's named phases
(jaxlvlm.train.trainer) and adds what methods need around the jitted step: a ``before_step`` that
may rewrite the method state from the batch (e.g. this batch's task weights) and an ``after_step``
that folds the step's outputs into it (e.g. DWA windows, pool coefficients), both jitted, both pure.
(Module name starts with '_' so the runner registry does not take it for a runner.)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import linen as nn

from jaxlvlm.train import setup as S
from jaxlvlm.train import trainer as TR
from jaxlvlm.train.checkpoint import Checkpointer
from jaxlvlm.train.metrics import MetricsWriter
from jaxlvlm.train.state import TrainState

PHASE_FILE = "phase.json"

# before_step(method_state, batch, step) -> method_state
BeforeStep = Callable[[dict, dict, jax.Array], dict]
# after_step(state, batch, metrics) -> method_state  (state is the state after the update)
AfterStep = Callable[[TrainState, dict, dict], dict]
# lowrank_fn(state, batch) -> the model's lowrank argument (evaluation)
LowrankFn = Callable[[TrainState, dict], Any]


@dataclasses.dataclass
class PhaseResult:
    """state: the final train state (None when the phase was complete and need_state was False);
    scores: {task: score in [0, 1]} on the phase's eval sources (None if not evaluated);
    wall_s: seconds of training + evaluation (from phase.json for a phase done earlier);
    steps: config.train.steps; resumed_from: the step the phase restarted at (0 = fresh, -1 = done)."""

    state: TrainState | None
    scores: dict[str, float] | None
    wall_s: float
    steps: int
    resumed_from: int
    run: TR.Run


def read_phase(workdir: str) -> dict | None:
    """The phase.json of a complete phase, or None."""
    path = os.path.join(workdir, PHASE_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_json_atomic(path: str, value: Any) -> None:
    """Writes JSON to ``path`` through a temporary file, so a reader never sees half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)


def _write_phase(workdir: str, info: dict) -> None:
    if jax.process_index() != 0:
        return
    write_json_atomic(os.path.join(workdir, PHASE_FILE), info)


def run_phase(
    config,
    workdir: str,
    *,
    init_params: Any = None,
    method_state: dict | None = None,
    lora_init: Callable[[jax.Array], Any] | None = None,
    loss_fn: Callable | None = None,
    forward_fn: Callable | None = None,
    before_step: BeforeStep | None = None,
    after_step: AfterStep | None = None,
    lowrank_fn: LowrankFn | None = None,
    finalize: Callable[[TrainState], TrainState] | None = None,
    wrap_iterator: Callable[[Any, TR.Run], Any] | None = None,
    evaluate: bool = True,
    need_state: bool = True,
    extra: dict | None = None,
    train_sources: list | None = None,
) -> PhaseResult:
    """Trains ``config`` in ``workdir`` to config.train.steps, evaluates, marks the phase complete.

    Args:
      config: a full run config (its data.sources are this phase's training data, data.eval_sources
        its evaluation data, data.tasks the global task names).
      init_params: starting model parameters (e.g. the previous task's); None = the model's init
        (or config.init_from).
      method_state / lora_init / loss_fn / forward_fn: passed to the trainer's state and step.
      before_step / after_step: method-state updates around each step (see module docstring).
      lowrank_fn: the model's low-rank hooks during evaluation.
      wrap_iterator: (train iterator, run) -> iterator adding method keys to each batch (it must
        keep get_state/set_state).
      finalize: pure end-of-phase update of the trained state (e.g. the pool's end-of-task
        snapshot), applied before evaluation and again to the restored state of a complete phase.
      evaluate: run greedy evaluation at the end.
      need_state: for a phase already complete, restore its final state (else state=None).
      extra: JSON-able values stored in phase.json.
      train_sources: TaskSources to train on instead of config.data.sources (e.g. a selected
        subset of a lifelong pool, a federated client's partition).
    Returns:
      PhaseResult.
    """
    run = TR.prepare_run(config, workdir)
    done = read_phase(workdir)
    setup = S.plan_train_state(
        run.model,
        run.model_cfg,
        config,
        run.mesh,
        run.rules,
        method_state=method_state,
        lora_init=lora_init,
    )
    checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints)
    if done is not None:
        state = None
        if need_state:
            state, _, _ = checkpointer.restore(checkpointer.latest_step(), setup.abstract)
            if finalize is not None:
                state = finalize(state)
        checkpointer.close()
        logging.info("phase %s is complete; skipping it", workdir)
        return PhaseResult(state, done.get("scores"), done["wall_s"], done["steps"], -1, run)

    t0 = time.perf_counter()
    from jaxlvlm.data.pipeline import make_train_iterator

    data_iter = make_train_iterator(
        run.data_cfg, run.tokenizer, run.image_cfg, run.mesh, config.seed, sources=train_sources
    )
    if wrap_iterator is not None:
        data_iter = wrap_iterator(data_iter, run)
    latest = checkpointer.latest_step()
    if latest is not None:
        state = TR.init_or_restore(run, setup, checkpointer, data_iter)
    elif init_params is not None:
        state = setup.create(init_params)
    else:
        state = TR.init_or_restore(run, setup, checkpointer, data_iter)
    resumed_from = int(jax.device_get(state.step))
    TR.write_param_table(run, state, setup.labels)
    base_step = S.jit_train_step(
        run.model,
        setup,
        config,
        run.mesh,
        run.rules,
        max(len(run.task_names), 1),
        loss_fn=loss_fn,
        forward_fn=forward_fn,
    )
    step_fn = _wrap_step(base_step, setup, run, before_step, after_step)
    writer = MetricsWriter(workdir)
    try:
        state, bad_samples = TR.train_to_end(run, state, step_fn, data_iter, checkpointer, writer)
        if finalize is not None:
            state = finalize(state)
        scores = None
        if evaluate:
            evaluate_fn = TR.make_evaluator(run, lowrank_fn)
            if evaluate_fn is not None:
                result = evaluate_fn(state)
                scores = result.scores
                writer.write(int(jax.device_get(state.step)), scores, kind="eval")
                _write_predictions(workdir, result.predictions)
    finally:
        writer.close()
        checkpointer.close()
    wall_s = time.perf_counter() - t0
    info = {
        "scores": scores,
        "wall_s": wall_s,
        "steps": int(config.train.steps),
        "resumed_from": resumed_from,
        # Samples skipped by the bad-sample policy in this phase, per reason (counted, never silent).
        "bad_samples": bad_samples,
        **(extra or {}),
    }
    _write_phase(workdir, info)
    return PhaseResult(state, scores, wall_s, int(config.train.steps), resumed_from, run)


def _wrap_step(base_step, setup, run, before_step, after_step):
    if before_step is None and after_step is None:
        return base_step
    ms_sharding = setup.shardings.method_state
    pre = jax.jit(before_step, out_shardings=ms_sharding) if before_step else None
    post = jax.jit(after_step, out_shardings=ms_sharding) if after_step else None

    def step_fn(state: TrainState, batch: dict):
        with run.mesh, nn.logical_axis_rules(list(run.rules)):
            if pre is not None:
                state = state.replace(method_state=pre(state.method_state, batch, state.step))
        state, metrics = base_step(state, batch)
        with run.mesh, nn.logical_axis_rules(list(run.rules)):
            if post is not None:
                state = state.replace(method_state=post(state, batch, metrics))
        return state, metrics

    return step_fn


def _write_predictions(workdir: str, predictions: list[dict]) -> None:
    if jax.process_index() != 0:
        return
    with open(os.path.join(workdir, "predictions.jsonl"), "w") as f:
        for p in predictions:
            f.write(json.dumps(p) + "\n")


def scores_vector(scores: dict[str, float] | None, task_names: list[str]) -> np.ndarray:
    """{task: score} -> [T] in task order, scaled to [0, 100]; a task without a score is an error."""
    if scores is None:
        raise ValueError("this phase was not evaluated; enable config.eval and give eval sources")
    missing = [t for t in task_names if t not in scores]
    if missing:
        raise ValueError(
            f"no evaluation score for tasks {missing} (scored: {sorted(scores)}); every task needs "
            "eval sources whose records carry that task name"
        )
    return np.asarray([100.0 * scores[t] for t in task_names], np.float64)
