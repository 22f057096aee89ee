"""Cluster-wise SemDeDup pruning of the Adapt-∞ pool down to a capacity.

Within each cluster, with L2-normalised embeddings E, the redundancy of row j is its largest cosine
similarity to any earlier row of the same cluster, r_j = max_{i<j} <E_i, E_j> (the first row of a
cluster has r = -inf). Each cluster keeps its b'_k least redundant rows, with b'_k the equal split
of the capacity (selection.cluster_budgets). "Earlier" is pool order, i.e. arrival order ([O]): of
a near-duplicate pair, the older sample stays and the newcomer goes.

Similarities are computed a row block at a time ([block, n] at most), so a cluster of n rows never
needs the n x n matrix at once.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxlvlm.methods.adapt_inf.selection import _rank_within_groups, cluster_budgets


@functools.partial(jax.jit, static_argnames=("block",))
def cluster_redundancy(
    emb: jax.Array, labels: jax.Array, valid: jax.Array, block: int = 256
) -> jax.Array:
    """r_j = max over earlier valid rows i of the same cluster of <E_i, E_j>.

    emb [n, d] (rows L2-normalised by the caller), labels [n], valid [n] -> r [n] float32
    (-inf where no earlier row exists; invalid rows get +inf so they are never kept).
    """
    n = emb.shape[0]
    block = min(block, n)
    nb = -(-n // block)
    pad = nb * block - n
    e = emb.astype(jnp.float32)
    e_rows = jnp.pad(e, ((0, pad), (0, 0))).reshape(nb, block, -1)
    lab_rows = jnp.pad(labels, (0, pad), constant_values=-1).reshape(nb, block)
    idx_rows = jnp.arange(nb * block).reshape(nb, block)
    col_idx = jnp.arange(n)

    def one_block(args):
        e_b, lab_b, idx_b = args
        sim = e_b @ e.T  # [block, n]
        ok = (
            (col_idx[None, :] < idx_b[:, None])
            & (labels[None, :] == lab_b[:, None])
            & valid[None, :]
        )
        return jnp.max(jnp.where(ok, sim, -jnp.inf), axis=1)

    r = jax.lax.map(one_block, (e_rows, lab_rows, idx_rows)).reshape(-1)[:n]
    return jnp.where(valid, r, jnp.inf)


@functools.partial(jax.jit, static_argnames=("num_clusters",))
def keep_least_redundant(
    redundancy: jax.Array,
    labels: jax.Array,
    valid: jax.Array,
    num_clusters: int,
    capacity: jax.Array | int,
) -> jax.Array:
    """Keeps, per cluster, the b'_k rows with the smallest redundancy; sum b'_k = min(capacity, n).

    redundancy [n], labels [n], valid [n] -> keep [n] bool.
    """
    group = jnp.where(valid, labels, num_clusters).astype(jnp.int32)
    sizes = jnp.zeros((num_clusters + 1,), jnp.int32).at[group].add(1)[:num_clusters]
    budgets = cluster_budgets(sizes, capacity)
    # Ties (e.g. several -inf firsts) are broken by pool order: older rows first.
    rank = _rank_within_groups(group, jnp.where(valid, redundancy, 0.0), num_clusters)
    budgets_ext = jnp.concatenate([budgets, jnp.zeros((1,), jnp.int32)])
    return valid & (rank < budgets_ext[group])


@functools.partial(jax.jit, static_argnames=("num_clusters", "block"))
def semdedup_keep(
    emb: jax.Array,
    labels: jax.Array,
    valid: jax.Array,
    num_clusters: int,
    capacity: jax.Array | int,
    block: int = 256,
) -> jax.Array:
    """Cluster-wise SemDeDup of an in-memory pool: emb [n, d], labels [n], valid [n] -> keep [n]."""
    r = cluster_redundancy(emb, labels, valid, block)
    return keep_least_redundant(r, labels, valid, num_clusters, capacity)
