"""One Adapt-∞ clustering of the pool per time step, as the authors' selection script does it.

The authors' ``data_selection/adapt-inf.py`` (function ``cluster``) fits a fresh scikit-learn
``MiniBatchKMeans(n_clusters=K, batch_size=10240)`` on the whole current pool at every run, so
each time step gets its own k-means++ seeding; nothing is warm-started from an earlier step.
``cluster_step`` does the same in JAX: k-means++ from ``key``, then Lloyd iterations when the
pool fits in one batch (a mini-batch of the whole pool is the full batch) or mini-batch epochs
over random permutations when it does not, and final labels with no empty cluster. Every
re-seeding of an empty cluster is counted per cluster and returned for the log.

A warm start (``init_centroids``) is still offered for callers that keep centroids across steps;
it is only meaningful when the sample vectors of both steps come from the same projection.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from jaxlvlm.methods.adapt_inf.kmeans import (
    KMeansState,
    assign,
    assign_nonempty,
    init_state,
    kmeans_plusplus,
    lloyd_step_events,
    minibatch_step,
    reseed_empty,
)

# The authors' MiniBatchKMeans batch size (adapt-inf.py, ``cluster``).
AUTHORS_BATCH_SIZE = 10240


@struct.dataclass
class ClusterResult:
    """state: centroids [K, d] and counts [K]; labels [n] int32 (invalid rows: arbitrary);
    sizes [K] int32 valid rows per cluster; inertia: within-cluster sum of squared distances;
    reseeds [K] int32: how often each cluster was empty and re-seeded during this clustering."""

    state: KMeansState
    labels: jax.Array
    sizes: jax.Array
    inertia: jax.Array
    reseeds: jax.Array


def _finish(x, valid, state, reseeds) -> ClusterResult:
    labels, centroids, last = assign_nonempty(x, valid, state.centroids)
    k = centroids.shape[0]
    d = jnp.sum((x.astype(jnp.float32) - centroids[labels]) ** 2, axis=-1)
    return ClusterResult(
        state=state.replace(centroids=centroids),
        labels=labels,
        sizes=jnp.zeros((k,), jnp.int32).at[labels].add(valid.astype(jnp.int32)),
        inertia=jnp.sum(d * valid),
        reseeds=reseeds + last.astype(jnp.int32),
    )


def _lloyd(x, valid, state, iters):
    def body(_, carry):
        state, reseeds = carry
        state, _, moved = lloyd_step_events(state, x, valid)
        return state, reseeds + moved.astype(jnp.int32)

    k = state.centroids.shape[0]
    return jax.lax.fori_loop(0, iters, body, (state, jnp.zeros((k,), jnp.int32)))


def _minibatch(x, valid, state, iters, batch_size, key):
    n = x.shape[0]
    k = state.centroids.shape[0]
    num_batches = n // batch_size  # full batches only: one compiled shape

    def epoch(carry, epoch_key):
        state, reseeds = carry
        perm = jax.random.permutation(epoch_key, n)

        def one(state, b):
            rows = jax.lax.dynamic_slice_in_dim(perm, b * batch_size, batch_size)
            return minibatch_step(state, x[rows], valid[rows]), None

        state, _ = jax.lax.scan(one, state, jnp.arange(num_batches))
        # Empty clusters of the whole pool are re-seeded once per epoch; the new centre starts
        # with a count of 1, so the next batches move it like a centre that has seen one point.
        labels, d = assign(x, state.centroids)
        centroids, _, moved = reseed_empty(x, valid, state.centroids, labels, d)
        counts = jnp.where(moved, 1.0, state.counts)
        state = KMeansState(centroids=centroids, counts=counts)
        return (state, reseeds + moved.astype(jnp.int32)), None

    keys = jax.random.split(key, iters)
    (state, reseeds), _ = jax.lax.scan(epoch, (state, jnp.zeros((k,), jnp.int32)), keys)
    return state, reseeds


@functools.partial(jax.jit, static_argnames=("num_clusters", "iters", "batch_size"))
def cluster_step(
    u: jax.Array,
    valid: jax.Array,
    num_clusters: int,
    key: jax.Array,
    iters: int = 20,
    batch_size: int = AUTHORS_BATCH_SIZE,
    init_centroids: jax.Array | None = None,
) -> ClusterResult:
    """Clusters the pool's sample vectors for one time step.

    Args:
      u: [n, d] sample vectors (one projection for the whole stream).
      valid: [n] bool, rows taking part.
      num_clusters: K (at most the number of distinct valid rows, or some cluster stays empty).
      key: PRNG key of this step's seeding and mini-batch order.
      iters: Lloyd iterations, or mini-batch epochs when n > batch_size.
      batch_size: mini-batch size (the authors' 10240).
      init_centroids: [K, d] to warm-start from; None = k-means++ (the authors' choice).
    Returns:
      ClusterResult (labels with no empty cluster whenever the pool allows it).
    """
    x = u.astype(jnp.float32)
    seed_key, order_key = jax.random.split(key)
    if init_centroids is None:
        init_centroids = kmeans_plusplus(x, valid, num_clusters, seed_key)
    state = init_state(init_centroids)
    if x.shape[0] <= batch_size:
        state, reseeds = _lloyd(x, valid, state, iters)
    else:
        state, reseeds = _minibatch(x, valid, state, iters, batch_size, order_key)
    return _finish(x, valid, state, reseeds)
