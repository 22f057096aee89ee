"""The weightings' phase hooks: the task weights live in the train state's method_state and enter
the token-level weighted loss (eq. 6); the dynamic ones (TLA, DWA, RLW) update them around steps."""

from __future__ import annotations

import jax.numpy as jnp

from jaxlvlm.data import batch as B
from jaxlvlm.methods import task_weighting as tw
from jaxlvlm.train.losses import register_loss, task_weights_per_row, token_nll
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

    # TLA divides by the token count, not by sum(lam m): its own loss (task_level_average).
    loss_fn = task_level_average if wcfg.name == "tla" else None
    return MethodHooks(
        method_state=method_state, before_step=before, after_step=after, loss_fn=loss_fn
    )


@register_loss("task_level_average")
def task_level_average(logits, batch: dict, method_state: dict) -> tuple:
    """TLA's loss: sum(lam[task] m nll) / sum(m) with lam = N / (T N_t) from before_step, i.e.
    (1/T) sum_t L_t (VisATB weight_method.py; token_weighted_nll would divide by sum(lam m),
    which equals this only when every task is in the batch). (numerator, denominator, aux)."""
    nll = token_nll(logits, batch[B.TARGETS])
    mask = batch[B.LOSS_MASK].astype(jnp.float32)
    lam = task_weights_per_row(batch, method_state)
    return jnp.sum(lam[:, None] * mask * nll), jnp.sum(mask), {"nll": nll}
