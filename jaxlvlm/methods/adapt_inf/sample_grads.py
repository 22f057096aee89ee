"""Per-sample gradient vectors (Adapt-∞ sample embeddings) with vmap(grad).

The gradient of each sample's answer loss w.r.t. the LoRA parameters of ONE decoder layer is taken
for the whole batch at once (``jax.vmap(jax.grad(...))``), flattened, projected by the block
Rademacher projection and L2-normalised. GraNd (the unprojected gradient norm) falls out for free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxlvlm.methods.adapt_inf.projection import normalize_rows, rademacher_project
from jaxlvlm.train.losses import token_nll

PyTree = Any
SampleLoss = Callable[[PyTree, dict[str, jax.Array]], jax.Array]


def answer_nll(logits: jax.Array, targets: jax.Array, loss_mask: jax.Array) -> jax.Array:
    """Token-mean NLL of the answer tokens of one sample.

    logits [L, V], targets [L] int, loss_mask [L] -> scalar. A sample without answer tokens gets 0.
    """
    nll = token_nll(logits, targets)
    mask = loss_mask.astype(jnp.float32)
    return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def per_sample_grads(loss_fn: SampleLoss, params: PyTree, batch: dict[str, jax.Array]) -> PyTree:
    """Gradients of ``loss_fn(params, sample)`` for every row of ``batch``, via vmap(grad).

    ``batch`` holds arrays with a leading dimension B; ``loss_fn`` sees one row (no leading dim).
    Returns a pytree shaped like ``params`` with a leading B on every leaf.
    """
    return jax.vmap(jax.grad(loss_fn), in_axes=(None, 0))(params, batch)


def flatten_per_sample(grads: PyTree) -> jax.Array:
    """Concatenates every leaf of a per-sample gradient pytree into g [B, P] float32."""
    leaves = jax.tree_util.tree_leaves(grads)
    if not leaves:
        raise ValueError("flatten_per_sample: the gradient pytree has no leaves")
    batch = leaves[0].shape[0]
    return jnp.concatenate([x.reshape(batch, -1).astype(jnp.float32) for x in leaves], axis=1)


def sample_vectors(
    loss_fn: SampleLoss,
    params: PyTree,
    batch: dict[str, jax.Array],
    key: jax.Array,
    dim: int,
    block_k: int = 128,
    block_p: int = 16384,
) -> tuple[jax.Array, jax.Array]:
    """Adapt-∞ sample vectors and GraNd scores for one batch.

    Returns (u [B, dim] unit rows = normalise(Π g / sqrt(dim)), grand [B] = ||g||_2 in float32).
    Jit the caller (or wrap with ``jax.jit(..., static_argnames=('loss_fn', 'dim', ...))``);
    the projection is jitted on its own.
    """
    g = flatten_per_sample(per_sample_grads(loss_fn, params, batch))
    grand = jnp.linalg.norm(g, axis=-1)
    u = rademacher_project(g, key, dim=dim, block_k=block_k, block_p=block_p)
    return normalize_rows(u), grand


def per_sample_grads_loop(
    loss_fn: SampleLoss, params: PyTree, batch: dict[str, jax.Array]
) -> PyTree:
    """The same gradients one sample at a time (a jitted grad per row): the benchmark baseline."""
    grad_one = jax.jit(jax.grad(loss_fn))
    size = jax.tree_util.tree_leaves(batch)[0].shape[0]
    rows = [
        grad_one(params, jax.tree_util.tree_map(lambda x, i=i: x[i], batch)) for i in range(size)
    ]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *rows)
