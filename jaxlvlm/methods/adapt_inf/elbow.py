"""Choosing K for Adapt-∞'s clusters by the elbow of the within-cluster sum of squares.

The authors pick K by eye: ``data_selection/adapt-inf.py`` (``calc_wss_sil``) prints, after each
clustering, the cluster sizes and the within-cluster sum of distances, run for several K. Here
``elbow_curve`` clusters the pool for a range of K and returns both that sum of distances and the
sum of squared distances (WSS, what k-means minimises); ``choose_elbow`` picks K automatically
([O], the authors give no rule): the K whose point lies farthest below the chord from the first to
the last point of the WSS curve, both axes scaled to [0, 1] (the "kneedle" construction).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlvlm.methods.adapt_inf.clustering import AUTHORS_BATCH_SIZE, cluster_step
from jaxlvlm.methods.adapt_inf.settings import AdaptInfSettings


def elbow_curve(
    u: jax.Array,
    valid: jax.Array,
    ks: Sequence[int],
    key: jax.Array,
    iters: int = 20,
    batch_size: int = AUTHORS_BATCH_SIZE,
) -> dict[str, np.ndarray]:
    """Clusters u [n, d] once per K in ``ks`` (same key for each) and measures the fit.

    Returns {'k': [m] int, 'wss': [m] sum of squared distances to the centroid, 'wsd': [m] the
    authors' sum of (unsquared) distances}, in the order of ``ks``.
    """
    x = jnp.asarray(u, jnp.float32)
    valid = jnp.asarray(valid, bool)
    wss, wsd = [], []
    for k in ks:
        res = cluster_step(x, valid, int(k), key, iters=iters, batch_size=batch_size)
        dist = jnp.linalg.norm(x - res.state.centroids[res.labels], axis=-1)
        wss.append(float(res.inertia))
        wsd.append(float(jnp.sum(dist * valid)))
    return {"k": np.asarray(ks, np.int64), "wss": np.asarray(wss), "wsd": np.asarray(wsd)}


def choose_elbow(ks: Sequence[int], wss: Sequence[float]) -> int:
    """The elbow K of a decreasing WSS curve (ks ascending, at least 3 points; else the last K)."""
    k = np.asarray(ks, np.float64)
    w = np.asarray(wss, np.float64)
    if len(k) < 3 or w[0] == w[-1]:
        return int(k[-1])
    kx = (k - k[0]) / (k[-1] - k[0])
    wy = (w - w[-1]) / (w[0] - w[-1])
    below_chord = (1.0 - kx) - wy  # chord from (0, 1) to (1, 0)
    return int(k[int(np.argmax(below_chord))])


def format_elbow(curve: dict[str, np.ndarray]) -> list[str]:
    """Log lines of an elbow curve: one per K with WSS and the authors' sum of distances."""
    return [
        f"K={int(k)}: WSS={w:.4f}, sum of distances={s:.4f}"
        for k, w, s in zip(curve["k"], curve["wss"], curve["wsd"], strict=True)
    ]


def resolve_num_clusters(
    u: jax.Array, valid: jax.Array, settings: AdaptInfSettings, key: jax.Array
) -> tuple[int, dict[str, np.ndarray] | None]:
    """K for this step: settings.clusters, or the elbow of ``elbow_ks`` when it is 'elbow'.

    K never exceeds the number of valid rows. Returns (K, the elbow curve or None) so the caller
    can log the curve (format_elbow).
    """
    n = int(np.asarray(valid).sum())
    if settings.clusters != "elbow":
        return max(1, min(int(settings.clusters), n)), None
    ks = [k for k in settings.elbow_ks if k <= n] or [max(1, n)]
    curve = elbow_curve(u, valid, ks, key, settings.kmeans_iters, settings.kmeans_batch)
    return choose_elbow(curve["k"], curve["wss"]), curve
