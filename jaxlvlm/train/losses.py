"""Training losses as pure functions of (logits, batch, method_state).

A loss returns ``(numerator, denominator, aux)``: the step's loss is sum(numerator) / sum(denominator)
over all micro-batches, so gradient accumulation gives exactly the full-batch loss. Methods register
their own losses by name (``config.train.loss``) with ``@register_loss('name')``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxlvlm.data import batch as B

LossFn = Callable[[jax.Array, dict, dict], tuple[jax.Array, jax.Array, dict]]

LOSSES: dict[str, LossFn] = {}

# loss name -> token_weight_fn(batch, method_state) -> w [B, L] (no gradient) for the losses that are
# sum(w * nll) / sum(w): those can run as a chunked LM head + cross-entropy (train.loss_chunk > 0).
TOKEN_WEIGHTS: dict[str, Callable[[dict, dict], jax.Array]] = {}


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    def deco(fn: LossFn) -> LossFn:
        LOSSES[name] = fn
        return fn

    return deco


def get_loss(name: str) -> LossFn:
    if name not in LOSSES:
        raise ValueError(f"config.train.loss={name!r} is unknown; known losses: {sorted(LOSSES)}")
    return LOSSES[name]


def token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Next-token negative log-likelihood.

    logits [B, L, V] (any float dtype, computed in float32), targets [B, L] int -> nll [B, L] float32.
    """
    logits = logits.astype(jnp.float32)
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return logz - picked


def task_weights_per_row(batch: dict, method_state: dict) -> jax.Array:
    """lambda[task_ids] [B]; lambda = method_state['task_weights'] [T] if present, else ones."""
    lam = method_state.get("task_weights") if method_state else None
    task_ids = batch[B.TASK_IDS]
    if lam is None:
        return jnp.ones(task_ids.shape, jnp.float32)
    return jnp.asarray(lam, jnp.float32)[task_ids]


def token_loss_weights(batch: dict, method_state: dict) -> jax.Array:
    """lam[task] * loss_mask: the per-token weights [B, L] float32 of ``token_weighted_nll``."""
    mask = batch[B.LOSS_MASK].astype(jnp.float32)
    return task_weights_per_row(batch, method_state)[:, None] * mask


def get_token_weights(name: str) -> Callable[[dict, dict], jax.Array]:
    """The token-weight form of loss ``name``, for the chunked LM-head loss."""
    if name not in TOKEN_WEIGHTS:
        raise ValueError(
            f"config.train.loss={name!r} has no token-weight form, so it cannot run with "
            f"config.train.loss_chunk > 0; chunkable losses: {sorted(TOKEN_WEIGHTS)} "
            "(or set loss_chunk=0)"
        )
    return TOKEN_WEIGHTS[name]


@register_loss("token_weighted_nll")
def token_weighted_nll(logits: jax.Array, batch: dict, method_state: dict) -> tuple:
    """Token-level task-weighted NLL: sum(lam[task] * m * nll) / sum(lam[task] * m).

    With all weights 1 this is LLaVA's token-mean loss. Returns (numerator, denominator, aux) with
    aux['nll'] [B, L] so the step can report per-task losses without recomputing.
    """
    nll = token_nll(logits, batch[B.TARGETS])
    w = token_loss_weights(batch, method_state)
    return jnp.sum(w * nll), jnp.sum(w), {"nll": nll}


TOKEN_WEIGHTS["token_weighted_nll"] = token_loss_weights


def per_task_token_sums(nll: jax.Array, batch: dict, num_tasks: int) -> tuple[jax.Array, jax.Array]:
    """Unweighted per-task sums of masked token NLL and token counts, both [T] float32."""
    mask = batch[B.LOSS_MASK].astype(jnp.float32)
    onehot = jax.nn.one_hot(batch[B.TASK_IDS], num_tasks, dtype=jnp.float32)  # [B, T]
    loss_sum = onehot.T @ jnp.sum(mask * nll, axis=1)
    tokens = onehot.T @ jnp.sum(mask, axis=1)
    return loss_sum, tokens
