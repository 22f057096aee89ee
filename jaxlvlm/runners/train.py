"""mode 'train': plain visual instruction tuning (all tasks mixed, uniform token-level loss).

One phase in the workdir (train to config.train.steps, resuming from the newest checkpoint, with
evaluation every train.eval_every steps and at the end), then report.md.
"""

from __future__ import annotations

import time

from jaxlvlm.runners.registry import register_runner
from jaxlvlm.train import run_setup as RS
from jaxlvlm.train.phase import run_phase


@register_runner("train")
def run_train(config, workdir: str) -> dict:
    """Trains to config.train.steps (resuming from workdir), evaluates, writes the report."""
    t0 = time.perf_counter()
    res = run_phase(config, workdir)
    report = RS.finish_report(
        res.run, res.eval_result, time.perf_counter() - t0, "jaxlvlm: visual instruction tuning"
    )
    return {"state": res.state, "scores": res.scores, "report": report}
