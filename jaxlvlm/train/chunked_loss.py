"""LM head + token-weighted cross-entropy in sequence chunks, so the [B, L, V] float32 logits and their
gradient never exist at once.

The loss is sum(w * nll) for token weights w [B, L] that carry no gradient (LLaVA's loss mask times the
task weight of train/losses.py). Its gradient with respect to the logits of one chunk is
w * (softmax - onehot), known in the forward pass, so each chunk's gradients with respect to its hidden
states and the head's parameters are computed right there (one forward and two backward matmuls per
chunk, the same FLOPs as the plain path, nothing recomputed) and scaled by the incoming cotangent in
the backward pass. Only [B, chunk, V] logits are live at a time.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxlvlm.models.config import LVLMConfig
from jaxlvlm.train.losses import get_token_weights

# head_fn(head_params, hidden [B, c, C]) -> float32 logits [B, c, V]
HeadFn = Callable[[Any, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class ChunkedHead:
    """How a model's LM head is applied to slices of hidden states.

    apply(head_params, hidden [B, c, C]) -> logits [B, c, V] float32; select(params) -> head_params
    (the parameter subtree the head reads, a tree ``apply`` accepts); chunk: positions per chunk.
    """

    apply: HeadFn
    select: Callable[[Any], Any]
    chunk: int


def make_chunked_head(model: nn.Module, chunk: int) -> ChunkedHead:
    """ChunkedHead for an LVLM or a CausalLM/Decoder built by jaxlvlm.models.build_model.

    The head reads the embedding table when embeddings are tied, else lm_head; only that subtree
    enters the chunked function, so no zero gradients of the rest of the model are carried.
    """
    if chunk < 1:
        raise ValueError(f"loss chunk must be >= 1 positions, got {chunk}")

    cfg = model.config
    is_lvlm = isinstance(cfg, LVLMConfig)
    text = cfg.text if is_lvlm else cfg
    key = "embed_tokens" if text.tie_word_embeddings else "lm_head"

    def select(params):
        root = params["llm"] if is_lvlm else params
        if key not in root:
            raise ValueError(
                f"the model's parameters have no '{key}' subtree (tie_word_embeddings="
                f"{text.tie_word_embeddings}); are the parameters from this model config?"
            )
        sub = {key: root[key]}
        return {"llm": sub} if is_lvlm else sub

    def apply(head_params, hidden):
        return model.apply({"params": head_params}, hidden, method="logits")

    return ChunkedHead(apply=apply, select=select, chunk=int(chunk))


def _chunks(x: jax.Array, chunk: int) -> jax.Array:
    """[B, L, ...] -> [n, B, chunk, ...] with L zero-padded up to n * chunk."""
    b, length = x.shape[:2]
    n = -(-length // chunk)
    pad = n * chunk - length
    if pad:
        x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
    return jnp.swapaxes(x.reshape((b, n, chunk) + x.shape[2:]), 0, 1)


def _unchunk(x: jax.Array, length: int) -> jax.Array:
    """[n, B, chunk, ...] -> [B, length, ...]."""
    x = jnp.swapaxes(x, 0, 1)
    return x.reshape((x.shape[0], -1) + x.shape[3:])[:, :length]


def _forward_and_grads(
    head_fn, chunk, param_grad, head_params, hidden, targets, weights, grads=True
):
    """(num [], nll [B, L]) and, with grads, the gradients of num w.r.t. (head_params, hidden)."""
    length = hidden.shape[1]
    xs = (
        _chunks(hidden, chunk),
        _chunks(targets.astype(jnp.int32), chunk),
        _chunks(weights, chunk),
    )

    def body(carry, x):
        num, d_params = carry
        h, t, w = x
        if not grads:
            logits = head_fn(head_params, h)
        elif param_grad:
            logits, vjp = jax.vjp(head_fn, head_params, h)
        else:
            logits, vjp_h = jax.vjp(lambda hh: head_fn(head_params, hh), h)
        out_dtype = logits.dtype
        logits = logits.astype(jnp.float32)
        logz = jax.nn.logsumexp(logits, axis=-1)
        picked = jnp.take_along_axis(logits, t[..., None], axis=-1)[..., 0]
        nll = logz - picked
        if not grads:
            return (num + jnp.sum(w * nll), d_params), (nll, None)
        # d sum(w * nll) / d logits = w * (softmax - onehot)
        probs = jnp.exp(logits - logz[..., None])
        onehot = jax.nn.one_hot(t, logits.shape[-1], dtype=jnp.float32)
        d_logits = (w[..., None] * (probs - onehot)).astype(out_dtype)
        if param_grad:
            dp, dh = vjp(d_logits)
            d_params = jax.tree_util.tree_map(jnp.add, d_params, dp)
        else:
            (dh,) = vjp_h(d_logits)
        return (num + jnp.sum(w * nll), d_params), (nll, dh)

    zeros = jax.tree_util.tree_map(jnp.zeros_like, head_params) if param_grad and grads else None
    (num, d_params), (nll, dh) = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros), xs)
    dh = None if dh is None else _unchunk(dh, length)
    return num, _unchunk(nll, length), d_params, dh


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _weighted_nll(head_fn, chunk, param_grad, head_params, hidden, targets, weights):
    num, nll, _, _ = _forward_and_grads(
        head_fn, chunk, param_grad, head_params, hidden, targets, weights, grads=False
    )
    return num, nll


def _weighted_nll_fwd(head_fn, chunk, param_grad, head_params, hidden, targets, weights):
    num, nll, d_params, dh = _forward_and_grads(
        head_fn, chunk, param_grad, head_params, hidden, targets, weights
    )
    if not param_grad:
        d_params = jax.tree_util.tree_map(jnp.zeros_like, head_params)
    return (num, nll), (d_params, dh)


def _weighted_nll_bwd(head_fn, chunk, param_grad, res, cts):
    del head_fn, chunk, param_grad
    d_params, dh = res
    g = cts[0]  # the nll output is wrapped in stop_gradient by the public function
    d_params = jax.tree_util.tree_map(lambda d: (g * d).astype(d.dtype), d_params)
    return d_params, (g * dh).astype(dh.dtype), None, None


_weighted_nll.defvjp(_weighted_nll_fwd, _weighted_nll_bwd)


def chunked_weighted_nll(
    head: ChunkedHead,
    params: Any,
    hidden: jax.Array,
    targets: jax.Array,
    weights: jax.Array,
    param_grad: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """sum(weights * nll) of the LM head's next-token NLL, computed head.chunk positions at a time.

    params: the full model parameters (the head's subtree is taken with head.select); hidden [B, L, C]
    final-normed hidden states; targets [B, L] int; weights [B, L] float (no gradient flows to them).
    param_grad=False skips the head's parameter gradient (a frozen head) and returns zeros for it.
    Returns (numerator [] float32, differentiable with respect to params and hidden; nll [B, L] float32
    per-token NLL, for metrics only: it carries no gradient).
    """
    head_params = head.select(params)
    num, nll = _weighted_nll(
        head.apply,
        head.chunk,
        bool(param_grad),
        head_params,
        hidden,
        targets,
        jax.lax.stop_gradient(weights.astype(jnp.float32)),
    )
    return num, jax.lax.stop_gradient(nll)


def chunked_step_kwargs(
    model: nn.Module, config: Any, forward_fn: Callable | None, loss_fn: Callable | None
) -> dict:
    """make_train_step keyword arguments for config.train.loss_chunk ({} when it is 0 or absent).

    The chunked path needs the trainer's own forward (it asks the model for hidden states) and a
    loss with a token-weight form; a custom forward_fn or loss_fn with loss_chunk > 0 is refused
    with the key to change rather than silently run unchunked.
    """

    chunk = int(config.train.get("loss_chunk", 0))
    if chunk <= 0:
        return {}
    if forward_fn is not None or loss_fn is not None:
        raise ValueError(
            f"config.train.loss_chunk={chunk} needs the trainer's own forward and loss, but this "
            "run passes its own forward_fn/loss_fn (a method's runner); set "
            "config.train.loss_chunk=0 for it"
        )
    return {
        "chunked_head": make_chunked_head(model, chunk),
        "token_weight_fn": get_token_weights(config.train.loss),
    }
