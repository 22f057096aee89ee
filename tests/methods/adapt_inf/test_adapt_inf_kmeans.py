"""k-means: Lloyd and mini-batch steps against numpy; k-means++ and both variants separate blobs."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxlvlm.methods.adapt_inf.kmeans import (
    KMeansState,
    assign,
    init_state,
    kmeans,
    kmeans_plusplus,
    lloyd_step,
    minibatch_step,
)


def _blobs(n_per=40, k=4, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 10
    x = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(k), n_per)
    return x, y


def _pure(labels, truth, k):
    """Each predicted cluster holds one true blob and each blob one cluster."""
    pairs = {(int(a), int(b)) for a, b in zip(labels, truth, strict=True)}
    return len(pairs) == k and len({a for a, _ in pairs}) == k


def test_lloyd_step_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    valid = np.ones(30, bool)
    valid[-4:] = False
    c = x[:3].copy()
    state, inertia = lloyd_step(init_state(jnp.asarray(c)), jnp.asarray(x), jnp.asarray(valid))
    d = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    lab = d.argmin(1)
    ref = np.stack([x[(lab == j) & valid].mean(0) for j in range(3)])
    np.testing.assert_allclose(np.asarray(state.centroids), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(inertia), d.min(1)[valid].sum(), rtol=1e-5)


def test_minibatch_step_matches_sequential_rule():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 3)).astype(np.float32)
    c = rng.normal(size=(2, 3)).astype(np.float32)
    counts = np.array([3.0, 0.0], np.float32)
    state = minibatch_step(
        KMeansState(jnp.asarray(c), jnp.asarray(counts)), jnp.asarray(x), jnp.ones(12, bool)
    )
    # Sequential Sculley updates with assignments fixed at the batch start.
    lab = ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1)
    ref_c, ref_n = c.astype(np.float64).copy(), counts.astype(np.float64).copy()
    for xi, j in zip(x, lab, strict=True):
        ref_n[j] += 1
        ref_c[j] += (xi - ref_c[j]) / ref_n[j]
    np.testing.assert_allclose(np.asarray(state.centroids), ref_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(state.counts), ref_n)


def test_kmeans_plusplus_and_full_kmeans_separate_blobs():
    x, y = _blobs()
    valid = jnp.ones(len(x), bool)
    init = np.asarray(kmeans_plusplus(jnp.asarray(x), valid, 4, jax.random.key(0)))
    init_labels, _ = assign(jnp.asarray(init), jnp.asarray(_blobs()[0][::40]))
    assert len(set(np.asarray(init_labels).tolist())) == 4  # one seed per blob
    _, labels, inertia = kmeans(jnp.asarray(x), valid, 4, 10, jax.random.key(0))
    assert _pure(np.asarray(labels), y, 4)
    assert float(inertia) < 2.0 * len(x) * x.shape[1]  # ~ within-blob variance only


def test_minibatch_kmeans_separates_blobs_streamed():
    x, y = _blobs(seed=3)
    perm = np.random.default_rng(0).permutation(len(x))
    xs, ys = x[perm], y[perm]
    state = init_state(
        kmeans_plusplus(jnp.asarray(xs[:64]), jnp.ones(64, bool), 4, jax.random.key(1))
    )
    for _ in range(3):
        for start in range(0, len(xs), 32):
            state = minibatch_step(state, jnp.asarray(xs[start : start + 32]), jnp.ones(32, bool))
    labels, _ = assign(jnp.asarray(xs), state.centroids)
    assert _pure(np.asarray(labels), ys, 4)
