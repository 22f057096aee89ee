"""Per-step clustering: no empty cluster (re-seeds counted), no collapse under a foreign warm
start, the elbow, the task x cluster table and the settings' checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlvlm.methods.adapt_inf import (
    AdaptInfSettings,
    assign,
    choose_elbow,
    cluster_step,
    elbow_curve,
    format_task_cluster_table,
    init_state,
    lloyd_step_events,
    normalize_rows,
    rademacher_project,
    resolve_num_clusters,
    task_cluster_counts,
    zero_image,
)


def _blobs(n_per=50, k=4, d=64, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 5
    x = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(k), n_per)


def test_empty_cluster_is_reseeded_at_the_farthest_point_and_counted():
    x = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [9.0]], np.float32)
    far_away = np.array([[0.1], [5.05], [100.0]], np.float32)  # centre 2 attracts nothing
    state, _, reseeded = lloyd_step_events(init_state(far_away), x, np.ones(6, bool))
    np.testing.assert_array_equal(np.asarray(reseeded), [False, False, True])
    labels, _ = assign(jnp.asarray(x), state.centroids)
    assert set(np.asarray(labels).tolist()) == {0, 1, 2}
    # 9.0 is the point farthest from its centroid (5.05): it now seeds cluster 2.
    assert int(labels[5]) == 2 and float(state.centroids[2, 0]) == pytest.approx(9.0)


def test_foreign_warm_start_no_longer_collapses_the_pool():
    g, truth = _blobs(d=256)
    u = normalize_rows(rademacher_project(jnp.asarray(g), jax.random.PRNGKey(1), dim=128))
    valid = jnp.ones(len(g), bool)
    # Centroids from another random space: nearly orthogonal to every u, so every point falls to
    # the one of smallest norm (squared distance ~ 1 + |c|^2), the collapse seen in the runs.
    rng = np.random.default_rng(5)
    foreign = rng.normal(size=(4, 128)).astype(np.float32)
    foreign /= np.linalg.norm(foreign, axis=1, keepdims=True)
    foreign[0] *= 0.05
    collapsed, _ = assign(u, jnp.asarray(foreign))
    assert set(np.asarray(collapsed).tolist()) == {0}
    warm = cluster_step(u, valid, 4, jax.random.PRNGKey(3), init_centroids=jnp.asarray(foreign))
    assert np.all(np.asarray(warm.sizes) > 0) and int(warm.sizes.sum()) == len(g)
    assert int(warm.reseeds.sum()) >= 3  # the three stranded centres were re-seeded (and logged)
    fresh = cluster_step(u, valid, 4, jax.random.PRNGKey(3))
    pairs = {(int(a), int(b)) for a, b in zip(np.asarray(fresh.labels), truth, strict=True)}
    assert len(pairs) == 4 and int(fresh.reseeds.sum()) == 0  # one cluster per blob


def test_minibatch_path_keeps_every_cluster():
    g, truth = _blobs(n_per=60, d=8)
    res = cluster_step(
        jnp.asarray(g), jnp.ones(len(g), bool), 6, jax.random.PRNGKey(0), batch_size=32
    )
    assert np.all(np.asarray(res.sizes) > 0) and int(res.sizes.sum()) == len(g)


def test_task_cluster_counts_and_table():
    tasks = np.array([0, 0, 1, 1, 1, 2])
    labels = np.array([1, 1, 0, 1, 2, 2])
    valid = np.array([True, True, True, True, True, False])
    counts = np.asarray(task_cluster_counts(tasks, labels, valid, 3, 3))
    np.testing.assert_array_equal(counts, [[0, 2, 0], [1, 1, 1], [0, 0, 0]])
    lines = format_task_cluster_table(counts, ["a", "b", "c"])
    assert lines[2] == "| a | 0 | 2 | 0 |" and lines[-1] == "| **size** | 1 | 3 | 1 |"


def test_elbow_finds_the_number_of_blobs():
    g, _ = _blobs(n_per=40, k=4, d=16, seed=3)
    curve = elbow_curve(
        jnp.asarray(g), np.ones(len(g), bool), [2, 3, 4, 5, 6, 8], jax.random.PRNGKey(0)
    )
    assert np.all(np.diff(curve["wss"]) <= 1e-3 * curve["wss"][0])
    assert choose_elbow(curve["k"], curve["wss"]) == 4
    assert np.all(curve["wsd"] > 0)


def test_settings_check_their_values():
    assert AdaptInfSettings().scorers == ("log_perplexity", "el2n", "entropy", "image_grounding")
    AdaptInfSettings(clusters="elbow", scorers=("el2n", "grand"))
    for bad in (
        dict(clusters="many"),
        dict(scorers=("nope",)),
        dict(hist_edges="raw"),
        dict(budget_rule="round"),
        dict(image_grounding="blur"),
    ):
        with pytest.raises(ValueError):
            AdaptInfSettings(**bad)


def test_zero_image_keeps_tokens_and_zeroes_pixels():
    batch = {"input_ids": jnp.arange(6).reshape(1, 6), "pixel_values": jnp.ones((1, 1, 2, 2, 3))}
    out = zero_image(batch)
    np.testing.assert_array_equal(out["input_ids"], batch["input_ids"])
    assert float(jnp.abs(out["pixel_values"]).sum()) == 0.0


def test_resolve_num_clusters_fixed_and_elbow():
    g, _ = _blobs(n_per=30, k=3, d=8, seed=4)
    valid = np.ones(len(g), bool)
    key = jax.random.PRNGKey(0)
    k, curve = resolve_num_clusters(jnp.asarray(g), valid, AdaptInfSettings(clusters=10), key)
    assert (k, curve) == (10, None)
    k, curve = resolve_num_clusters(
        jnp.asarray(g), valid, AdaptInfSettings(clusters="elbow", elbow_ks=(2, 3, 4, 5, 6)), key
    )
    assert k == 3 and list(curve["k"]) == [2, 3, 4, 5, 6]
