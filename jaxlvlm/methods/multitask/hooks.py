"""The weightings' phase hooks: the task weights live in the train state's method_state and enter
the token-level weighted loss (eq. 6); the dynamic ones (TLA, DWA, RLW) update them around steps."""

from __future__ import annotations

from jaxlvlm.data import batch as B
from jaxlvlm.methods import task_weighting as tw
from jaxlvlm.train.phase import MethodHooks

STATIC = ("ew", "cotbal")  # weights fixed for the whole run


def weighting_hooks(wcfg: tw.WeightingConfig, static_weights=None) -> MethodHooks:
    """Hooks of weighting ``wcfg.name``; static_weights [T]: CoTBal's lambda."""
    method_state = tw.init_weighting_state(wcfg, static_weights=static_weights)
    if wcfg.name in STATIC:
        return MethodHooks(method_state=method_state)

    def before(ms, batch, step):
        return tw.before_step(wcfg, ms, batch[B.LOSS_MASK], batch[B.TASK_IDS], step)

    def after(state, batch, metrics):
        del batch
        tok = metrics["task_tokens"]
        return tw.after_step(wcfg, state.method_state, metrics["task_loss"] * tok, tok)

    return MethodHooks(method_state=method_state, before_step=before, after_step=after)
