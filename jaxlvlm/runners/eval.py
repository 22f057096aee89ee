"""mode 'eval': scores a trained model on data.eval_sources without training.

The parameters come from the workdir's latest checkpoint, else from config.init_from (a converted
checkpoint); with neither it is an error (scoring random weights is never what was meant).
"""

from __future__ import annotations

import json
import logging
import os
import time

import jax

from jaxlvlm.runners.registry import register_runner
from jaxlvlm.train import setup as S
from jaxlvlm.train.checkpoint import Checkpointer
from jaxlvlm.train.metrics import MetricsWriter
from jaxlvlm.train.trainer import finish_report, init_or_restore, make_evaluator, prepare_run


@register_runner("eval")
def run_eval(config, workdir: str) -> dict:
    """Restores and evaluates; writes eval.json, predictions.jsonl and report.md to the workdir."""
    t0 = time.perf_counter()
    run = prepare_run(config, workdir)
    setup = S.plan_train_state(run.model, run.model_cfg, config, run.mesh, run.rules)
    checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints)
    if checkpointer.latest_step() is None and not config.init_from:
        raise FileNotFoundError(
            f"mode 'eval': no checkpoint in {checkpointer.directory} and no config.init_from; "
            "train first (mode 'train' with the same --workdir) or point init_from at a "
            "converted checkpoint"
        )
    state = init_or_restore(run, setup, checkpointer)
    checkpointer.close()
    evaluate_fn = make_evaluator(run)
    if evaluate_fn is None:
        raise ValueError("mode 'eval': config.eval.enabled is False or there are no eval sources")
    result = evaluate_fn(state)
    step = int(jax.device_get(state.step))
    logging.info("per-task scores at step %d: %s", step, result.scores)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "eval.json"), "w") as f:
            json.dump({"step": step, "scores": result.scores, "counts": result.counts}, f, indent=1)
    writer = MetricsWriter(workdir)
    writer.write(step, result.scores, kind="eval")
    writer.close()
    report = finish_report(run, result, time.perf_counter() - t0, "jaxlvlm: evaluation")
    return {"state": state, "scores": result.scores, "report": report}
