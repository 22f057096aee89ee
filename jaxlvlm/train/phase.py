"""The phase: the one unit every mode trains and evaluates through.

A phase is (config, initial params, data, step function, evaluation) -> (final state, scores, phase
record). A plain training run is one phase in its workdir; a method runner chains several (a base
model, a CoTBal probe, a task of a continual stream, a lifelong step), each in a workdir of its own.
What every phase gets, written once here:

- resume: the newest checkpoint that restores (a damaged one is skipped, jaxlvlm.train.checkpoint),
  else the given initial params, else config.init_from, else a fresh init; a resume under a config
  that trains differently is refused naming the key (jaxlvlm.train.fingerprint);
- the non-finite guard and periodic checkpoints (jaxlvlm.train.loop);
- bad-sample accounting: what the data policy skipped is counted in the record, never dropped
  silently;
- the record ``phase.json``, written atomically once the phase is complete, so a rerun skips the
  phase and reads its scores (and restores its final state when asked).

A method adds its pieces through ``MethodHooks``: its state, its low-rank tree, its loss or
forward, pure updates of its state around each step, and its low-rank hooks for evaluation.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxlvlm import sharding as shd
from jaxlvlm.data.pipeline import make_train_iterator
from jaxlvlm.files import PathLike, read_json, run_path, write_json_atomic
from jaxlvlm.train import run_setup as RS
from jaxlvlm.train import setup as S
from jaxlvlm.train.checkpoint import Checkpointer
from jaxlvlm.train.fingerprint import check_config_drift
from jaxlvlm.train.loop import EarlyStop, train_loop
from jaxlvlm.train.metrics import MetricsWriter, read_metrics
from jaxlvlm.train.state import TrainState

PHASE_FILE = "phase.json"

# before_step(method_state, batch, step) -> method_state
BeforeStep = Callable[[dict, dict, jax.Array], dict]
# after_step(state, batch, metrics) -> method_state  (state is the state after the update)
AfterStep = Callable[[TrainState, dict, dict], dict]
# lowrank_fn(state, batch) -> the model's lowrank argument (evaluation)
LowrankFn = Callable[[TrainState, dict], Any]


@dataclasses.dataclass(frozen=True)
class MethodHooks:
    """What a method adds to a phase; every field optional, every function pure.

    method_state: initial method state (host arrays; its structure is fixed from here on).
    lora_init: ``rng -> tree`` replacing config.lora's factors in the state's ``lora`` slot.
    loss_fn / forward_fn: the step's loss and forward (jaxlvlm.train.step).
    before_step / after_step: jitted updates of the method state around each step.
    lowrank_fn: the model's low-rank hooks during evaluation.
    finalize: end-of-phase update of the trained state, applied before evaluation and again to
      the restored state of a complete phase.
    wrap_iterator: (train iterator, run) -> iterator adding method keys to each batch (it must keep
      get_state / set_state).
    """

    method_state: dict | None = None
    lora_init: Callable[[jax.Array], Any] | None = None
    loss_fn: Callable | None = None
    forward_fn: Callable | None = None
    before_step: BeforeStep | None = None
    after_step: AfterStep | None = None
    lowrank_fn: LowrankFn | None = None
    finalize: Callable[[TrainState], TrainState] | None = None
    wrap_iterator: Callable[[Any, RS.Run], Any] | None = None


NO_HOOKS = MethodHooks()


@dataclasses.dataclass
class PhaseResult:
    """state: the final train state (None when the phase was complete and need_state was False);
    scores: {task: score in [0, 1]} on the phase's eval sources (None if not evaluated);
    record: the phase.json content; run: the phase's Run (tokenizer, model, mesh, data config);
    resumed_from: the step training restarted at in this call (0 = fresh, -1 = already complete);
    eval_result: the evaluation (predictions included) when it ran in this call."""

    state: TrainState | None
    scores: dict[str, float] | None
    record: dict
    run: RS.Run
    resumed_from: int
    eval_result: Any = None

    @property
    def wall_s(self) -> float:
        return float(self.record["wall_s"])

    @property
    def steps(self) -> int:
        return int(self.record["steps"])


def read_phase(workdir: PathLike) -> dict | None:
    """The phase.json of a complete phase, or None."""
    return read_json(run_path(workdir) / PHASE_FILE)


def refuse_drift(checkpointer: Checkpointer, step: int, config) -> None:
    """Refuses checkpoint ``step`` when it was saved under a config that trains differently."""
    saved = checkpointer.read_config(step)
    check_config_drift(f"{checkpointer.directory}/{step}", saved, RS.config_json(config))


def start_state(
    run: RS.Run,
    setup: S.StateSetup,
    checkpointer: Checkpointer,
    *,
    init_params: Any = None,
    data_iter: Any = None,
    check_drift: bool = True,
) -> TrainState:
    """The newest restorable checkpoint (data iterator state included), else ``init_params``, else
    config.init_from's parameters, else the model's own init. check_drift: refuse a checkpoint
    saved under a config that trains differently (jaxlvlm.train.fingerprint), naming the key."""

    def restore(step: int):
        if check_drift:
            refuse_drift(checkpointer, step, run.config)
        return checkpointer.restore(step, setup.abstract)

    found = checkpointer.restore_newest(restore)
    if found is not None:
        step, (state, data_state, _) = found
        if data_iter is not None and data_state is not None:
            data_iter.set_state(data_state)
        logging.info("resumed from %s/%d", checkpointer.directory, step)
        return state
    if init_params is not None:
        return setup.create(init_params)
    if run.config.init_from:
        return setup.create(RS.load_init_params(run, setup))
    return setup.create()


def jit_phase_step(run: RS.Run, setup: S.StateSetup, hooks: MethodHooks) -> Callable:
    """The jitted train step with the method's state updates around it."""
    base = S.jit_train_step(
        run.model,
        setup,
        run.config,
        run.mesh,
        run.rules,
        max(len(run.task_names), 1),
        loss_fn=hooks.loss_fn,
        forward_fn=hooks.forward_fn,
    )
    if hooks.before_step is None and hooks.after_step is None:
        return base
    ms_sharding = setup.shardings.method_state
    pre = jax.jit(hooks.before_step, out_shardings=ms_sharding) if hooks.before_step else None
    post = jax.jit(hooks.after_step, out_shardings=ms_sharding) if hooks.after_step else None

    def step_fn(state: TrainState, batch: dict):
        with shd.mesh_context(run.mesh, run.rules):
            if pre is not None:
                state = state.replace(method_state=pre(state.method_state, batch, state.step))
        state, metrics = base(state, batch)
        with shd.mesh_context(run.mesh, run.rules):
            if post is not None:
                state = state.replace(method_state=post(state, batch, metrics))
        return state, metrics

    return step_fn


def _complete(run, setup, checkpointer, done, hooks, need_state) -> PhaseResult:
    state = None
    if need_state:
        found = checkpointer.restore_newest(lambda s: checkpointer.restore(s, setup.abstract))
        if found is None:
            raise FileNotFoundError(
                f"{run.workdir} has {PHASE_FILE} but no checkpoint; remove {PHASE_FILE} to retrain"
            )
        state = found[1][0]
        if hooks.finalize is not None:
            state = hooks.finalize(state)
    logging.info("phase %s is complete; skipping it", run.workdir)
    return PhaseResult(state, done.get("scores"), done, run, -1)


def run_phase(
    config,
    workdir: PathLike,
    *,
    init_params: Any = None,
    hooks: MethodHooks = NO_HOOKS,
    train_sources: list | None = None,
    evaluate: bool = True,
    need_state: bool = True,
    extra: dict | None = None,
    early_stop: EarlyStop | None = None,
) -> PhaseResult:
    """Trains ``config`` in ``workdir`` to config.train.steps, evaluates, records the phase.

    Args:
      config: a full run config (data.sources: this phase's training data; data.eval_sources: its
        evaluation data; data.tasks: the global task names).
      init_params: starting model parameters (e.g. the previous task's); None = config.init_from
        or the model's init. A checkpoint of this phase always wins (resume).
      hooks: the method's pieces (MethodHooks).
      train_sources: TaskSources to train on instead of data.sources (a selected subset of a
        lifelong pool, a federated client's partition).
      evaluate: greedy evaluation at the end (and every train.eval_every steps when > 0).
      need_state: for a phase already complete, restore its final state (else state=None).
      extra: JSON-able values stored in the record.
      early_stop: ``(step, [eval scores so far]) -> bool`` asked after each periodic evaluation
        (train.eval_every); the phase ends at the first step it says stop. The record's 'steps'
        is the step reached; with early_stop it also holds 'max_steps', the configured steps.
    """
    run = RS.prepare_run(config, workdir)
    setup = S.plan_train_state(
        run.model,
        run.model_cfg,
        config,
        run.mesh,
        run.rules,
        method_state=hooks.method_state,
        lora_init=hooks.lora_init,
    )
    checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints)
    done = read_phase(workdir)
    if done is not None:
        try:
            # A complete phase rerun under a config that trains differently (e.g. more steps)
            # is refused like a resume, never silently answered with the old result.
            latest = checkpointer.latest_step()
            if latest is not None:
                refuse_drift(checkpointer, latest, config)
            return _complete(run, setup, checkpointer, done, hooks, need_state)
        finally:
            checkpointer.close()
    t0 = time.perf_counter()
    data_iter = make_train_iterator(
        run.data_cfg, run.tokenizer, run.image_cfg, run.mesh, config.seed, sources=train_sources
    )
    if hooks.wrap_iterator is not None:
        data_iter = hooks.wrap_iterator(data_iter, run)
    writer = MetricsWriter(workdir)
    try:
        state = start_state(run, setup, checkpointer, init_params=init_params, data_iter=data_iter)
        resumed_from = int(jax.device_get(state.step))
        RS.write_param_table(run, state, setup.labels)
        evaluate_fn = RS.make_evaluator(run, hooks.lowrank_fn) if evaluate else None
        periodic = (lambda s: evaluate_fn(s).scores) if evaluate_fn else None
        state, _ = train_loop(
            state,
            jit_phase_step(run, setup, hooks),
            data_iter,
            config=config,
            checkpointer=checkpointer,
            writer=writer,
            task_names=run.task_names,
            step_flops=RS.step_flops(run),
            evaluate_fn=periodic,
            config_dict=RS.config_json(config),
            early_stop=early_stop,
            # The evaluations before a resume, so a resumed phase stops where it would have.
            eval_history=_eval_history(workdir, resumed_from) if early_stop else (),
        )
        bad_samples = _bad_samples(data_iter, checkpointer)
        if hooks.finalize is not None:
            state = hooks.finalize(state)
        result = evaluate_fn(state) if evaluate_fn is not None else None
        if result is not None:
            writer.write(int(jax.device_get(state.step)), result.scores, kind="eval")
            RS.write_predictions(run.workdir / "predictions.jsonl", result.predictions)
    finally:
        writer.close()
        checkpointer.close()
    record = {
        "scores": result.scores if result is not None else None,
        "wall_s": time.perf_counter() - t0,
        "steps": int(jax.device_get(state.step)),
        "resumed_from": resumed_from,
        # Samples skipped by the bad-sample policy in this phase, per reason (counted, never silent).
        "bad_samples": bad_samples,
        **(extra or {}),
    }
    if early_stop is not None:
        record["max_steps"] = int(config.train.steps)
    if jax.process_index() == 0:
        write_json_atomic(run.workdir / PHASE_FILE, record, what="phase record")
    return PhaseResult(state, record["scores"], record, run, resumed_from, result)


def _eval_history(workdir: str, upto: int) -> list[dict]:
    """The periodic evaluations metrics.jsonl holds up to step ``upto`` (those of the state
    resumed from), without the keys the writer adds."""
    by_step = {  # a step evaluated again after an earlier resume keeps its latest row
        r["step"]: {k: v for k, v in r.items() if k not in ("step", "kind")}
        for r in read_metrics(workdir)
        if r.get("kind") == "eval" and r["step"] <= upto
    }
    return [by_step[s] for s in sorted(by_step)]


def _bad_samples(data_iter: Any, checkpointer: Checkpointer) -> dict | None:
    summary = getattr(data_iter, "bad_sample_summary", lambda: None)()
    if summary and summary.get("skipped_total"):
        logging.warning("bad samples skipped in %s: %s", checkpointer.directory, summary)
    return summary


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
