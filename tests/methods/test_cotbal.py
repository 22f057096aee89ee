"""CoTBal: the published example, hand computations, guards and the weighted loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlvlm.methods import cotbal

# docs/methods.md section 1(c2): the authors' weighting script inputs for the Academic benchmark,
# tau = 0.5.
C_OUT = [0.1637, 0.1903, 0.1952, 0.1433, 0.0768, 0.1316, 0.1582]
C_IN = [0.1634, 0.2179, 0.1326, 0.1775, 0.1674, 0.0783, 0.1219]
RATIO = [0.7597, 0.5313, 0.8852, 0.7979, 0.5511, 0.8680, 0.1904]
PUBLISHED = [0.8585, 1.0557, 0.8107, 0.8151, 1.0020, 0.8177, 1.6403]

# A 3-task example small enough to compute by hand.
V3 = np.array([[0.8, 0.5, 0.3], [0.6, 0.9, 0.35], [0.55, 0.45, 0.5]])
V0_3 = np.array([0.5, 0.4, 0.3])


def test_published_example_reproduces_table5_weights():
    D = 1.0 - np.asarray(RATIO)
    lam = jax.jit(cotbal.cotbal_weights, static_argnames=("tau", "alphas"))(
        jnp.asarray(C_OUT), jnp.asarray(C_IN), jnp.asarray(D), tau=0.5, alphas=(0.25, 0.25, 0.5)
    )
    np.testing.assert_array_equal(np.round(np.asarray(lam), 4), np.asarray(PUBLISHED, np.float32))
    assert abs(float(lam.sum()) - 7.0) < 1e-5


def test_contribution_out_in_and_difficulty_by_hand():
    C = np.asarray(cotbal.contribution(V3, V0_3))
    # denominators V[j,j] - v0[j] = 0.3, 0.5, 0.2
    want = np.array(
        [
            [1.0, 0.1 / 0.5, 0.0 / 0.2],
            [0.1 / 0.3, 1.0, 0.05 / 0.2],
            [0.05 / 0.3, 0.05 / 0.5, 1.0],
        ]
    )
    np.testing.assert_allclose(C, want, rtol=1e-6, atol=1e-7)
    c_out, c_in = cotbal.out_in_contributions(C)
    np.testing.assert_allclose(c_out, [0.1, (1 / 3 + 0.25) / 2, (1 / 6 + 0.1) / 2], rtol=1e-6)
    np.testing.assert_allclose(c_in, [(1 / 3 + 1 / 6) / 2, (0.2 + 0.1) / 2, 0.25 / 2], rtol=1e-6)
    D = cotbal.difficulty(V3, V0_3)
    np.testing.assert_allclose(D, [1 - 0.5 / 0.8, 1 - 0.4 / 0.9, 1 - 0.3 / 0.5], rtol=1e-6)


def _np_weights(c_out, c_in, D, tau, alphas):
    def tw(x):
        e = np.exp((x - x.max()) / tau)
        return len(x) * e / e.sum()

    return alphas[0] * tw(c_out) + alphas[1] * tw(-c_in) + alphas[2] * tw(D)


def test_weights_from_scores_matches_numpy_chain():
    rng = np.random.default_rng(0)
    T = 5
    v0 = rng.uniform(0.1, 0.4, T)
    V = v0[None, :] + rng.uniform(0.0, 0.2, (T, T))
    V[np.arange(T), np.arange(T)] = v0 + rng.uniform(0.3, 0.5, T)
    out = cotbal.weights_from_scores(V, v0, tau=0.7, alphas=(0.2, 0.3, 0.5))
    C = (V - v0[None]) / (np.diag(V) - v0)[None]
    off = 1 - np.eye(T)
    c_out = (C * off).sum(1) / (T - 1)
    c_in = (C * off).sum(0) / (T - 1)
    D = 1 - v0 / np.diag(V)
    np.testing.assert_allclose(out["C"], C, rtol=1e-5)
    np.testing.assert_allclose(
        out["lam"], _np_weights(c_out, c_in, D, 0.7, (0.2, 0.3, 0.5)), rtol=1e-5
    )


def test_a_probe_that_does_not_improve_its_task_is_reported_not_clipped():
    # Task 1 gets worse with its own data (V[1, 1] = 0.3 <= v0[1] = 0.4): column 1 is undefined.
    V = np.array([[0.6, 0.5, 0.45], [0.55, 0.3, 0.5], [0.58, 0.42, 0.6]])
    v0 = np.array([0.5, 0.4, 0.4])
    C = np.asarray(cotbal.contribution(V, v0))
    assert np.all(np.isnan(C[:, 1])) and np.all(np.isfinite(np.delete(C, 1, axis=1)))
    out = cotbal.weights_from_scores(V, v0)
    np.testing.assert_array_equal(np.asarray(out["undefined"]), [False, True, False])
    # c_out averages the defined columns only; c_in[1] falls back to the mean of the others.
    np.testing.assert_allclose(out["c_out"][0], C[0, 2], rtol=1e-6)
    np.testing.assert_allclose(out["c_out"][2], C[2, 0], rtol=1e-6)
    np.testing.assert_allclose(out["c_in"][1], (out["c_in"][0] + out["c_in"][2]) / 2, rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(out["lam"])))
    (line,) = cotbal.fallback_lines(out, ["a", "b", "c"])
    assert "'b'" in line and "0.3" in line and "0.4" in line
    # Nothing improves: no contribution is measured, the inter-task weights are uniform.
    flat = cotbal.weights_from_scores(np.full((3, 3), 0.5), np.full(3, 0.5))
    assert np.asarray(flat["undefined"]).all()
    np.testing.assert_allclose(flat["c_out"], 0.0)
    np.testing.assert_allclose(flat["c_in"], 0.0)


def test_fixed_task_is_left_out_of_C_and_D():
    rng = np.random.default_rng(3)
    v0 = rng.uniform(0.2, 0.4, 8)
    V = v0[None, :] + rng.uniform(0.0, 0.3, (8, 8))
    V[7, :] = np.nan  # no probe is trained for the fixed (text-only) task
    V[:, 7] = rng.uniform(0.0, 1.0, 8)  # whatever its column holds must not matter
    balanced = np.array([True] * 7 + [False])
    full = cotbal.weights_from_scores(V, v0, balanced=balanced)
    alone = cotbal.weights_from_scores(V[:7, :7], v0[:7])
    assert float(full["lam"][7]) == 1.0
    np.testing.assert_allclose(np.asarray(full["lam"][:7]), np.asarray(alone["lam"]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(full["C"][:7, :7]), np.asarray(alone["C"]), rtol=1e-6)
    for k in ("c_out", "c_in", "D"):
        assert np.isnan(float(full[k][7]))
    assert np.all(np.isnan(np.asarray(full["C"])[7])) and np.all(
        np.isnan(np.asarray(full["C"])[:, 7])
    )


def test_auto_temperature_is_the_lowest_keeping_weights_in_bounds():
    D = 1.0 - np.asarray(RATIO)
    tau = cotbal.resolve_temperature("auto", C_OUT, C_IN, D, cotbal.DEFAULT_ALPHAS)
    lam = np.asarray(cotbal.cotbal_weights(C_OUT, C_IN, D, tau))
    assert lam.min() >= 0.5 - 1e-6 and lam.max() <= 2.0 + 1e-6
    assert abs(lam.min() - 0.5) < 1e-4 or abs(lam.max() - 2.0) < 1e-4  # a bound is active
    lower = np.asarray(cotbal.cotbal_weights(C_OUT, C_IN, D, tau * 0.99))
    assert lower.min() < 0.5 or lower.max() > 2.0
    # Published tau = 0.5 keeps Table 5 in bounds, so auto is below it.
    assert tau < 0.5
    out = cotbal.weights_from_scores(V3, V0_3, tau="auto")
    assert float(out["tau"]) > 0 and np.all(np.asarray(out["lam"]) >= 0.5 - 1e-6)
    with pytest.raises(ValueError, match="auto"):
        cotbal.resolve_temperature("lowest", C_OUT, C_IN, D, cotbal.DEFAULT_ALPHAS)


def test_lower_is_better_columns_are_negated():
    # An error-rate task (lower better): the probe on it lowers the error from 0.5 to 0.2.
    V = np.array([[0.9, 0.4], [0.6, 0.2]])
    v0 = np.array([0.5, 0.5])
    out = cotbal.weights_from_scores(V, v0, higher_better=np.array([True, False]))
    # C[0, 1] = (-0.4 - -0.5) / (-0.2 - -0.5) = 1/3
    np.testing.assert_allclose(out["C"][0, 1], 1 / 3, rtol=1e-6)


def test_unbalanced_tasks_keep_weight_one():
    D = 1.0 - np.asarray(RATIO)
    c_out8 = np.append(C_OUT, 5.0)  # a text-only task: huge values must not matter
    c_in8 = np.append(C_IN, -5.0)
    D8 = np.append(D, 5.0)
    balanced = np.array([True] * 7 + [False])
    lam = np.asarray(cotbal.cotbal_weights(c_out8, c_in8, D8, 0.5, balanced=balanced))
    assert lam[7] == 1.0
    np.testing.assert_array_equal(np.round(lam[:7], 4), np.asarray(PUBLISHED, np.float32))


def test_vitw_loss_matches_numpy_and_reduces_to_token_mean():
    rng = np.random.default_rng(1)
    nll = rng.uniform(0, 3, (4, 6)).astype(np.float32)
    mask = (rng.uniform(size=(4, 6)) > 0.4).astype(np.float32)
    task = np.array([0, 2, 1, 2], np.int32)
    lam = np.array([0.5, 1.5, 2.0], np.float32)
    w = lam[task][:, None] * mask
    want = (w * nll).sum() / w.sum()
    got = jax.jit(cotbal.vitw_loss)(nll, mask, task, lam)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    ew = cotbal.vitw_loss(nll, mask, task, np.ones(3, np.float32))
    np.testing.assert_allclose(ew, (mask * nll).sum() / mask.sum(), rtol=1e-6)
    assert float(cotbal.vitw_loss(nll, np.zeros_like(mask), task, lam)) == 0.0


def test_vitw_loss_gradient_is_weighted():
    nll = jnp.ones((2, 3))
    mask = jnp.ones((2, 3))
    g = jax.grad(lambda x: cotbal.vitw_loss(x, mask, jnp.array([0, 1]), jnp.array([1.0, 3.0])))(nll)
    np.testing.assert_allclose(g[0], np.full(3, 1 / 12), rtol=1e-6)
    np.testing.assert_allclose(g[1], np.full(3, 3 / 12), rtol=1e-6)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="alphas must sum to 1"):
        cotbal.cotbal_weights(jnp.zeros(3), jnp.zeros(3), jnp.zeros(3), 0.5, (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="tau must be > 0"):
        cotbal.cotbal_weights(jnp.zeros(3), jnp.zeros(3), jnp.zeros(3), 0.0)
    with pytest.raises(ValueError, match="square"):
        cotbal.contribution(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="v0 must have shape"):
        cotbal.difficulty(np.zeros((3, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="at least 2 tasks"):
        cotbal.out_in_contributions(np.ones((1, 1)))
