"""k-means for Adapt-∞'s pseudo-skill clusters: k-means++ init, Lloyd steps, mini-batch updates.

The centroids are a pytree (``KMeansState``) that the lifelong runner keeps in its train state, so
clusters survive a checkpoint and a resume is exact. Every function takes a ``valid`` mask so that
padded rows of a fixed-size batch take no part. Large pools are clustered with the mini-batch
variant (Sculley 2010: per-centre learning rate 1 / count), fed batch by batch from the host.

No cluster is left empty: an empty cluster is re-seeded at the valid point farthest from its own
centroid (taken from a cluster that keeps at least one point), the relocation scikit-learn's
KMeans applies to empty clusters; every re-seed is counted and returned, so a caller can log it.
Before this, an empty cluster kept its stale centre, and a pool warm-started from centroids of
another random projection collapsed into the one cluster of smallest norm.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class KMeansState:
    """centroids [K, d] float32; counts [K] float32 (points absorbed so far, for mini-batch rates)."""

    centroids: jax.Array
    counts: jax.Array


def pairwise_sqdist(x: jax.Array, centroids: jax.Array) -> jax.Array:
    """Squared Euclidean distances x [n, d], centroids [K, d] -> [n, K] (clipped at 0)."""
    x = x.astype(jnp.float32)
    c = centroids.astype(jnp.float32)
    d = jnp.sum(x * x, -1)[:, None] - 2.0 * x @ c.T + jnp.sum(c * c, -1)[None, :]
    return jnp.maximum(d, 0.0)


@jax.jit
def assign(x: jax.Array, centroids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Nearest centroid of each row: (labels [n] int32, squared distance [n])."""
    d = pairwise_sqdist(x, centroids)
    labels = jnp.argmin(d, axis=-1).astype(jnp.int32)
    return labels, jnp.take_along_axis(d, labels[:, None], axis=-1)[:, 0]


@functools.partial(jax.jit, static_argnames=("num_clusters",))
def kmeans_plusplus(x: jax.Array, valid: jax.Array, num_clusters: int, key: jax.Array) -> jax.Array:
    """k-means++ seeding: first centre uniform over valid rows, then D²-weighted sampling.

    x [n, d], valid [n] bool -> centroids [K, d]. Needs at least one valid row; with fewer valid
    rows than K, rows repeat (distance 0 gives probability 0 only while others remain).
    """
    x = x.astype(jnp.float32)
    n = x.shape[0]
    keys = jax.random.split(key, num_clusters)
    vmask = valid.astype(jnp.float32)
    first = jax.random.choice(keys[0], n, p=vmask / jnp.sum(vmask))
    centroids = jnp.zeros((num_clusters, x.shape[1]), jnp.float32).at[0].set(x[first])
    mind = pairwise_sqdist(x, x[first][None])[:, 0]

    def body(i, carry):
        centroids, mind = carry
        w = mind * vmask
        total = jnp.sum(w)
        # All valid rows already chosen (duplicates or fewer rows than K): fall back to uniform.
        p = jnp.where(total > 0, w / jnp.where(total > 0, total, 1.0), vmask / jnp.sum(vmask))
        idx = jax.random.choice(keys[i], n, p=p)
        centroids = centroids.at[i].set(x[idx])
        mind = jnp.minimum(mind, pairwise_sqdist(x, x[idx][None])[:, 0])
        return centroids, mind

    centroids, _ = jax.lax.fori_loop(1, num_clusters, body, (centroids, mind))
    return centroids


def init_state(centroids: jax.Array) -> KMeansState:
    """A KMeansState with zero counts around the given centroids [K, d]."""
    return KMeansState(
        centroids=centroids.astype(jnp.float32),
        counts=jnp.zeros((centroids.shape[0],), jnp.float32),
    )


def _cluster_sums(x, labels, valid, num_clusters):
    onehot = jax.nn.one_hot(labels, num_clusters, dtype=jnp.float32) * valid[:, None]
    return onehot.T @ x.astype(jnp.float32), jnp.sum(onehot, axis=0)


def reseed_empty(
    x: jax.Array, valid: jax.Array, centroids: jax.Array, labels: jax.Array, sqdist: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Re-seeds every empty cluster at the farthest valid point of a cluster with >= 2 points.

    x [n, d], valid [n] bool, centroids [K, d], labels [n] and sqdist [n] (from ``assign``) ->
    (centroids [K, d], labels [n] with each moved point in its new cluster, reseeded [K] bool).
    Clusters are visited in index order; a point is used at most once. A cluster stays empty
    only when no donor is left (fewer distinct valid points than K).
    """
    k = centroids.shape[0]
    sizes = jnp.zeros((k,), jnp.int32).at[labels].add(valid.astype(jnp.int32))

    def visit(c, carry):
        centroids, labels, sqdist, sizes, reseeded = carry
        donor = valid & (sizes[labels] >= 2)
        score = jnp.where(donor, sqdist, -1.0)
        j = jnp.argmax(score)
        move = (sizes[c] == 0) & (score[j] >= 0.0)
        old = labels[j]
        centroids = centroids.at[c].set(jnp.where(move, x[j].astype(jnp.float32), centroids[c]))
        step = move.astype(jnp.int32)
        sizes = sizes.at[old].add(-step).at[c].add(step)
        labels = labels.at[j].set(jnp.where(move, c, old))
        # The moved point sits on its new centre: distance 0, so it is never picked twice.
        sqdist = sqdist.at[j].set(jnp.where(move, 0.0, sqdist[j]))
        return centroids, labels, sqdist, sizes, reseeded.at[c].set(move)

    init = (centroids.astype(jnp.float32), labels, sqdist, sizes, jnp.zeros((k,), bool))
    centroids, labels, _, _, reseeded = jax.lax.fori_loop(0, k, visit, init)
    return centroids, labels, reseeded


@jax.jit
def assign_nonempty(
    x: jax.Array, valid: jax.Array, centroids: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Final labels with no empty cluster: assign, then re-seed empties.

    x [n, d], valid [n], centroids [K, d] -> (labels [n] int32, centroids [K, d] (re-seeded rows
    replaced), reseeded [K] bool).
    """
    labels, d = assign(x, centroids)
    centroids, labels, reseeded = reseed_empty(x, valid, centroids, labels, d)
    return labels, centroids, reseeded


@jax.jit
def lloyd_step_events(
    state: KMeansState, x: jax.Array, valid: jax.Array
) -> tuple[KMeansState, jax.Array, jax.Array]:
    """One Lloyd iteration on x [n, d]: assign, re-seed empty clusters, move each centre to its mean.

    Returns (new state with counts = cluster sizes, inertia = within-cluster sum of squared
    distances of the assignment before the move, reseeded [K] bool).
    """
    labels, d = assign(x, state.centroids)
    inertia = jnp.sum(d * valid)
    centroids, labels, reseeded = reseed_empty(x, valid, state.centroids, labels, d)
    sums, sizes = _cluster_sums(x, labels, valid, centroids.shape[0])
    new = jnp.where(sizes[:, None] > 0, sums / jnp.maximum(sizes, 1.0)[:, None], centroids)
    return KMeansState(centroids=new, counts=sizes), inertia, reseeded


@jax.jit
def lloyd_step(state: KMeansState, x: jax.Array, valid: jax.Array) -> tuple[KMeansState, jax.Array]:
    """``lloyd_step_events`` without the re-seed flags: (new state, inertia)."""
    new, inertia, _ = lloyd_step_events(state, x, valid)
    return new, inertia


@functools.partial(jax.jit, static_argnames=("num_clusters", "iters"))
def kmeans(
    x: jax.Array, valid: jax.Array, num_clusters: int, iters: int, key: jax.Array
) -> tuple[KMeansState, jax.Array, jax.Array]:
    """Full-batch k-means: k-means++ init then ``iters`` Lloyd steps, no cluster left empty.

    x [n, d], valid [n] -> (state, labels [n] int32, inertia scalar after the last step).
    """
    state = init_state(kmeans_plusplus(x, valid, num_clusters, key))
    state = jax.lax.fori_loop(0, iters, lambda _, s: lloyd_step(s, x, valid)[0], state)
    labels, centroids, _ = assign_nonempty(x, valid, state.centroids)
    d = jnp.sum((x.astype(jnp.float32) - centroids[labels]) ** 2, axis=-1)
    return state.replace(centroids=centroids), labels, jnp.sum(d * valid)


@jax.jit
def minibatch_step(state: KMeansState, x: jax.Array, valid: jax.Array) -> KMeansState:
    """One mini-batch k-means update on a batch x [b, d] (Sculley's per-centre rate).

    Each centre moves towards the mean of its batch points with weight m / (count + m), m = its
    number of points in the batch; this equals the sequential 1/count rule applied in one go.
    """
    labels, _ = assign(x, state.centroids)
    sums, sizes = _cluster_sums(x, labels, valid, state.centroids.shape[0])
    counts = state.counts + sizes
    rate = jnp.where(counts > 0, sizes / jnp.maximum(counts, 1.0), 0.0)
    mean = sums / jnp.maximum(sizes, 1.0)[:, None]
    centroids = state.centroids + rate[:, None] * (mean - state.centroids)
    return KMeansState(centroids=centroids, counts=counts)
