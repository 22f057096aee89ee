"""Server-side aggregation for Pilot and the federated baselines, as pure functions of stacked pytrees.

Client parameters arrive stacked: every leaf has a leading client axis K. ``valid`` [K] marks the
clients whose update was accepted this round; rejected clients neither contribute nor receive. The
stacked values must be finite everywhere (a zero weight times NaN is NaN):
server.collect_updates puts a rejected client's previous parameters in its slot.

- task_average: per task, the data-size weighted mean of its clients' task adapters (§4(b)).
- ata_weights / adaptive_aggregate: eq. (16), each client's personalised LoRA from itself and its
  M nearest clients (Euclidean distance of the flattened LoRA, float32), inverse-distance weights,
  self weight β_k = n_k / (n_k + Σ_{j∈N_M(k)} n_j).
- fedavg: one data-size weighted mean over clients (FedAvg / FedProx server).
The ``*_with_weights`` forms also return the weights they applied, so a run can record what the
server gave each client without recomputing it.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def flatten_clients(stacked: PyTree) -> jax.Array:
    """All leaves of a stacked pytree as one float32 matrix [K, P]."""
    leaves = jax.tree_util.tree_leaves(stacked)
    k = leaves[0].shape[0]
    return jnp.concatenate([x.reshape(k, -1).astype(jnp.float32) for x in leaves], axis=1)


def _mix(weights: jax.Array, stacked: PyTree) -> PyTree:
    """out[r] = Σ_k weights[r, k] * stacked[k] for every leaf (weights [R, K])."""
    return jax.tree_util.tree_map(
        lambda x: jnp.tensordot(weights, x.astype(jnp.float32), axes=1).astype(x.dtype), stacked
    )


@functools.partial(jax.jit, static_argnames=("num_tasks",))
def task_average(
    stacked: PyTree,
    task: jax.Array,
    num_examples: jax.Array,
    valid: jax.Array,
    num_tasks: int,
    previous: PyTree | None = None,
) -> PyTree:
    """Θ̄_τ = Σ_{k: t_k=τ} n_k Θ_k / Σ_{k: t_k=τ} n_k for τ = 0..T-1.

    stacked: leaves [K, ...]; task [K] int; num_examples [K]; valid [K] bool -> leaves [T, ...].
    A task with no accepted client keeps ``previous`` [T, ...] (zeros when None).
    """
    w = (task[None, :] == jnp.arange(num_tasks)[:, None]) * (num_examples * valid)[None, :]
    w = w.astype(jnp.float32)
    totals = jnp.sum(w, axis=1)
    avg = _mix(w / jnp.maximum(totals, 1e-12)[:, None], stacked)
    if previous is None:
        return avg

    def keep_previous(new, old):
        has = (totals > 0).reshape((num_tasks,) + (1,) * (new.ndim - 1))
        return jnp.where(has, new, old)

    return jax.tree_util.tree_map(keep_previous, avg, previous)


@functools.partial(jax.jit, static_argnames=("num_neighbours",))
def ata_weights(
    flat: jax.Array, num_examples: jax.Array, valid: jax.Array, num_neighbours: int
) -> jax.Array:
    """Eq. (16) as a row-stochastic mixing matrix W [K, K]: Θ̄_k = Σ_j W[k, j] Θ_j.

    flat [K, P] (flattened LoRA per client), num_examples [K], valid [K] bool. W[k, k] = β_k,
    W[k, j] = (1 - β_k) ω_kj for the M = ``num_neighbours`` nearest valid j ≠ k (fewer when fewer
    exist). Identical neighbours (distance 0) share their weight equally. Invalid rows are e_k.
    """
    k = flat.shape[0]
    sq = jnp.sum(flat * flat, axis=1)
    d2 = jnp.maximum(sq[:, None] - 2.0 * flat @ flat.T + sq[None, :], 0.0)
    dist = jnp.sqrt(d2)
    candidate = valid[None, :] & ~jnp.eye(k, dtype=bool)
    ranked = jnp.where(candidate, dist, jnp.inf)
    order = jnp.argsort(ranked, axis=1, stable=True)
    rank = jnp.zeros_like(order).at[jnp.arange(k)[:, None], order].set(jnp.arange(k)[None, :])
    neighbour = candidate & (rank < num_neighbours)
    # Inverse distances relative to the nearest neighbour: exact ratios, no overflow at distance 0.
    nearest = jnp.min(jnp.where(neighbour, dist, jnp.inf), axis=1, keepdims=True)
    zero = neighbour & (dist <= 0.0)
    inv = jnp.where(zero, 1.0, nearest / jnp.where(neighbour & (dist > 0), dist, 1.0))
    inv = jnp.where(
        jnp.any(zero, axis=1, keepdims=True),
        zero.astype(jnp.float32),
        jnp.where(neighbour, inv, 0.0),
    )
    omega = inv / jnp.maximum(jnp.sum(inv, axis=1, keepdims=True), 1e-30)
    n = num_examples.astype(jnp.float32)
    n_self = n
    n_neigh = jnp.sum(jnp.where(neighbour, n[None, :], 0.0), axis=1)
    beta = n_self / jnp.maximum(n_self + n_neigh, 1e-12)
    w = (1.0 - beta)[:, None] * omega + jnp.diag(beta)
    return jnp.where(valid[:, None], w, jnp.eye(k, dtype=w.dtype))


def adaptive_aggregate_with_weights(
    stacked: PyTree, num_examples: jax.Array, valid: jax.Array, num_neighbours: int
) -> tuple[PyTree, jax.Array]:
    """Eq. (16) and the mixing matrix it used: (leaves [K, ...], W [K, K], W[k, j] = the weight
    client k's personalised parameters give client j's upload)."""
    w = ata_weights(flatten_clients(stacked), num_examples, valid, num_neighbours)
    return _mix(w, stacked), w


def adaptive_aggregate(
    stacked: PyTree, num_examples: jax.Array, valid: jax.Array, num_neighbours: int
) -> PyTree:
    """Each client's personalised parameters by eq. (16): leaves [K, ...] -> [K, ...]."""
    return adaptive_aggregate_with_weights(stacked, num_examples, valid, num_neighbours)[0]


@jax.jit
def fedavg_with_weights(
    stacked: PyTree, num_examples: jax.Array, valid: jax.Array
) -> tuple[PyTree, jax.Array]:
    """Data-size weighted mean over accepted clients and its weights: (leaves [K, ...] -> [...],
    w [K], w[k] = n_k valid_k / sum_j n_j valid_j)."""
    w = (num_examples * valid).astype(jnp.float32)
    w = w / jnp.maximum(jnp.sum(w), 1e-12)
    avg = jax.tree_util.tree_map(
        lambda x: jnp.tensordot(w, x.astype(jnp.float32), axes=1).astype(x.dtype), stacked
    )
    return avg, w


def fedavg(stacked: PyTree, num_examples: jax.Array, valid: jax.Array) -> PyTree:
    """Data-size weighted mean over accepted clients: leaves [K, ...] -> [...]."""
    return fedavg_with_weights(stacked, num_examples, valid)[0]
