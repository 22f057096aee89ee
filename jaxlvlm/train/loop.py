"""The training loop: steps, logging, non-finite guard, checkpoints, periodic evaluation.

The loop owns no model logic: it calls the jitted ``step_fn(state, batch)``, a data iterator with
``get_state``/``set_state``, and an optional ``evaluate_fn(state) -> {task: score}``.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np

from jaxlvlm.train.checkpoint import Checkpointer
from jaxlvlm.train.metrics import MetricsWriter, to_python
from jaxlvlm.train.progress import Progress
from jaxlvlm.train.state import TrainState

# early_stop(step, evaluation results so far) -> whether to stop after this step
EarlyStop = Callable[[int, list[dict[str, Any]]], bool]


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became NaN/inf; the run stopped without saving that state."""


def _check_finite(step: int, metrics: dict, checkpointer: Checkpointer) -> None:
    loss = float(np.asarray(metrics["loss"]))
    gnorm = float(np.asarray(metrics["grad_norm"]))
    if math.isfinite(loss) and math.isfinite(gnorm):
        return
    checkpointer.wait()
    last = checkpointer.latest_step()
    where = (
        f"the last good checkpoint is step {last} in {checkpointer.directory}"
        if last is not None
        else "no checkpoint was saved before it"
    )
    raise NonFiniteLossError(
        f"step {step}: non-finite training signal (loss={loss}, grad_norm={gnorm}); stopping "
        f"without saving this state; {where}. Lower config.optim.lr, enable "
        "config.optim.max_grad_norm, or check the data of this step."
    )


def train_loop(
    state: TrainState,
    step_fn: Callable[[TrainState, dict], tuple[TrainState, dict]],
    data_iter: Iterator[dict],
    *,
    config,
    checkpointer: Checkpointer,
    writer: MetricsWriter,
    task_names: Sequence[str],
    step_flops: float,
    evaluate_fn: Callable[[TrainState], dict[str, Any]] | None = None,
    config_dict: dict | None = None,
    early_stop: EarlyStop | None = None,
    eval_history: Sequence[dict[str, Any]] = (),
) -> tuple[TrainState, dict[str, Any] | None]:
    """Runs from ``state.step`` to ``config.train.steps``; returns (state, last eval result).

    Every step's loss is checked at log and checkpoint points (all steps since the previous check),
    so a non-finite step is never saved. Checkpoints are async; the final one is waited for.

    early_stop(step, evals) -> bool is asked after every periodic evaluation (evals: every eval
    result so far, oldest first, starting with ``eval_history``, the ones from before a resume);
    when it says stop, the state is checkpointed at that step and the loop ends there. A resumed
    run whose history already says stop does not train.
    """
    t = config.train
    start = int(jax.device_get(state.step))
    progress = Progress(t.steps, start, bool(t.progress_bar), step_flops, t.peak_flops)
    pending: list[tuple[int, dict]] = []
    tokens_since = 0.0
    last_eval = None
    data_state = getattr(data_iter, "get_state", lambda: None)
    history = list(eval_history)
    if early_stop is not None and history and early_stop(start, history):
        logging.info("early stop: the evaluations up to step %d already said stop", start)
        return state, history[-1]
    try:
        for step in range(start + 1, t.steps + 1):
            batch = next(data_iter)
            state, metrics = step_fn(state, batch)
            pending.append((step, metrics))
            is_log = step % t.log_every == 0 or step == t.steps
            is_ckpt = step % t.checkpoint_every == 0 or step == t.steps
            is_eval = evaluate_fn is not None and t.eval_every > 0 and step % t.eval_every == 0
            is_halt = t.halt_after_steps > 0 and step == t.halt_after_steps
            if not (is_log or is_ckpt or is_eval or is_halt):
                continue
            for s, m in pending:
                _check_finite(s, m, checkpointer)
                tokens_since += float(np.asarray(m.get("input_tokens", m["tokens"])))
            pending.clear()
            if is_log:
                info = to_python(metrics, task_names)
                info.update(progress.rates(step, tokens_since))
                tokens_since = 0.0
                writer.write(step, info)
                progress.update(step, info)
                logging.info(
                    "step %d/%d loss %.4f grad_norm %.3f tokens/s %.0f mfu %.2f%%",
                    step,
                    t.steps,
                    info["loss"],
                    info["grad_norm"],
                    info["tokens_per_s"],
                    100 * info["mfu"],
                )
            if is_ckpt:
                checkpointer.save(step, state, data_state(), config_dict or {})
                # A remote workdir gets the metrics up to each checkpoint (kept across a kill).
                writer.sync()
            if is_eval:
                last_eval = evaluate_fn(state)
                writer.write(step, last_eval, kind="eval")
                history.append(last_eval)
                if early_stop is not None and early_stop(step, history):
                    if not is_ckpt:
                        checkpointer.save(step, state, data_state(), config_dict or {})
                    logging.info("early stop at step %d of %d", step, t.steps)
                    break
            if is_halt:
                # Preemption drill: die without warning after the durable checkpoints.
                checkpointer.wait()
                logging.warning("halt_after_steps=%d reached: killing the process", step)
                os.kill(os.getpid(), signal.SIGKILL)
    finally:
        progress.close()
        checkpointer.wait()
    return state, last_eval
