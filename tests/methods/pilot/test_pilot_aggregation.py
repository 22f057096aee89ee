"""Pilot server math against numpy: ATA weights (eq. 16), personalised average, task-aware averaging."""

import jax.numpy as jnp
import numpy as np

from jaxlvlm.methods.pilot.aggregation import adaptive_aggregate, ata_weights, fedavg, task_average


def _np_ata(flat, n, valid, m):
    k = len(flat)
    w = np.eye(k)
    for i in range(k):
        if not valid[i]:
            continue
        cand = [j for j in range(k) if j != i and valid[j]]
        d = {j: np.linalg.norm(flat[i] - flat[j]) for j in cand}
        nb = sorted(cand, key=lambda j: (d[j], j))[:m]
        if not nb:
            continue
        inv = np.array([1.0 / d[j] for j in nb])
        omega = inv / inv.sum()
        beta = n[i] / (n[i] + sum(n[j] for j in nb))
        w[i] = 0.0
        w[i, i] = beta
        for j, o in zip(nb, omega, strict=True):
            w[i, j] = (1 - beta) * o
    return w


def test_ata_weights_and_personalised_average_match_numpy():
    rng = np.random.default_rng(0)
    k, p = 6, 40
    flat = rng.normal(size=(k, p))
    n = rng.integers(5, 50, size=k).astype(np.float32)
    valid = np.array([True, True, False, True, True, True])
    for m in (1, 2, 3, 5):
        w = np.asarray(
            ata_weights(jnp.asarray(flat, jnp.float32), jnp.asarray(n), jnp.asarray(valid), m)
        )
        ref = _np_ata(flat, n, valid, m)
        np.testing.assert_allclose(w, ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
    tree = {
        "a": jnp.asarray(flat[:, :30].reshape(k, 5, 6), jnp.float32),
        "b": jnp.asarray(flat[:, 30:], jnp.float32),
    }
    out = adaptive_aggregate(tree, jnp.asarray(n), jnp.asarray(valid), 3)
    ref_flat = _np_ata(flat, n, valid, 3) @ flat
    np.testing.assert_allclose(
        np.asarray(out["a"]).reshape(k, 30), ref_flat[:, :30], rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(np.asarray(out["b"]), ref_flat[:, 30:], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(
        np.asarray(out["b"][2]), np.asarray(tree["b"][2])
    )  # rejected: unchanged


def test_ata_identical_neighbours_share_weight_and_single_client_keeps_itself():
    flat = jnp.asarray([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    w = np.asarray(ata_weights(flat, jnp.asarray([1.0, 1.0, 2.0]), jnp.ones(3, bool), 2))
    # Client 0: neighbour 1 at distance 0 takes all neighbour weight; beta = 1 / (1 + 1 + 2).
    np.testing.assert_allclose(w[0], [0.25, 0.75, 0.0], atol=1e-7)
    assert np.all(np.isfinite(w))
    w1 = np.asarray(ata_weights(jnp.ones((1, 4)), jnp.ones(1), jnp.ones(1, bool), 3))
    np.testing.assert_array_equal(w1, [[1.0]])


def test_task_average_and_fedavg_match_numpy():
    rng = np.random.default_rng(1)
    k, t = 7, 4
    x = rng.normal(size=(k, 3, 2)).astype(np.float32)
    task = np.array([0, 0, 1, 1, 2, 0, 1])  # task 3 has no client
    n = rng.integers(1, 20, size=k).astype(np.float32)
    valid = np.ones(k, bool)
    valid[5] = False
    prev = rng.normal(size=(t, 3, 2)).astype(np.float32)
    out = np.asarray(
        task_average(
            {"w": jnp.asarray(x)},
            jnp.asarray(task),
            jnp.asarray(n),
            jnp.asarray(valid),
            t,
            {"w": jnp.asarray(prev)},
        )["w"]
    )
    for tau in range(3):
        sel = (task == tau) & valid
        ref = (n[sel, None, None] * x[sel]).sum(0) / n[sel].sum()
        np.testing.assert_allclose(out[tau], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[3], prev[3])
    avg = np.asarray(fedavg({"w": jnp.asarray(x)}, jnp.asarray(n), jnp.asarray(valid))["w"])
    ref = (n[valid, None, None] * x[valid]).sum(0) / n[valid].sum()
    np.testing.assert_allclose(avg, ref, rtol=1e-5, atol=1e-6)
