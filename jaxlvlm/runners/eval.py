"""mode 'eval': scores a trained model on data.eval_sources without training.

The parameters come from the workdir's newest restorable checkpoint, else from config.init_from (a
converted checkpoint); with neither it is an error (scoring random weights is never what was meant).
"""

from __future__ import annotations

import time

import jax

from jaxlvlm.files import PathLike, write_json_atomic
from jaxlvlm.runners.registry import register_runner
from jaxlvlm.train import run_setup as RS
from jaxlvlm.train import setup as S
from jaxlvlm.train.checkpoint import Checkpointer
from jaxlvlm.train.metrics import MetricsWriter
from jaxlvlm.train.phase import start_state


@register_runner("eval")
def run_eval(config, workdir: PathLike) -> dict:
    """Restores and evaluates; writes eval.json, predictions.jsonl and report.md to the workdir."""
    t0 = time.perf_counter()
    run = RS.prepare_run(config, workdir)
    setup = S.plan_train_state(run.model, run.model_cfg, config, run.mesh, run.rules)
    checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints)
    try:
        if checkpointer.latest_step() is None and not config.init_from:
            raise FileNotFoundError(
                f"mode 'eval': no checkpoint in {checkpointer.directory} and no config.init_from; "
                "train first (mode 'train' with the same --workdir) or point init_from at a "
                "converted checkpoint"
            )
        # An eval config differs from the training one (mode, steps): no drift check here; the
        # restore itself refuses parameters that do not fit the model.
        state = start_state(run, setup, checkpointer, check_drift=False)
    finally:
        checkpointer.close()
    evaluate_fn = RS.make_evaluator(run)
    if evaluate_fn is None:
        raise ValueError("mode 'eval': config.eval.enabled is False or there are no eval sources")
    result = evaluate_fn(state)
    step = int(jax.device_get(state.step))
    if jax.process_index() == 0:
        doc = {"step": step, "scores": result.scores, "counts": result.counts}
        write_json_atomic(run.workdir / "eval.json", doc, what="evaluation")
    writer = MetricsWriter(workdir)
    writer.write(step, result.scores, kind="eval")
    writer.close()
    report = RS.finish_report(run, result, time.perf_counter() - t0, "jaxlvlm: evaluation")
    return {"state": state, "scores": result.scores, "report": report}
