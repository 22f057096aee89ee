"""Continual metrics on a hand-made accuracy matrix, computed by hand."""

import jax
import numpy as np
import pytest

from jaxlvlm.eval import continual_metrics as cm

# a[t, i]: score on task i after training task t.
A = np.array(
    [
        [80.0, 20.0, 10.0],
        [60.0, 90.0, 30.0],
        [70.0, 50.0, 40.0],
    ]
)
B = np.array([5.0, 10.0, 20.0])


def test_all_metrics_by_hand():
    m = jax.jit(cm.continual_metrics)(A, B)
    # ACC: (70 + 50 + 40) / 3
    np.testing.assert_allclose(m["ACC"], 160 / 3, rtol=1e-6)
    # MAA: (80 + (60 + 90) / 2 + 160 / 3) / 3
    np.testing.assert_allclose(m["MAA"], (80 + 75 + 160 / 3) / 3, rtol=1e-6)
    # F: task 0 best over t in [0, 1] = 80, final 70 -> 10; task 1 best over t = 1 -> 90, final 50 -> 40
    np.testing.assert_allclose(m["F"], (10 + 40) / 2, rtol=1e-6)
    # BWT: (70 - 80 + 50 - 90) / 2
    np.testing.assert_allclose(m["BWT"], -25.0, rtol=1e-6)
    # FWT: (a[0,1] - b[1] + a[1,2] - b[2]) / 2 = (10 + 10) / 2
    np.testing.assert_allclose(m["FWT"], 10.0, rtol=1e-6)
    # PL: (80 + 90 + 40) / 3
    np.testing.assert_allclose(m["PL"], 70.0, rtol=1e-6)


def test_forgetting_uses_the_best_earlier_score_not_just_the_diagonal():
    a = np.array([[50.0, 0, 0, 0], [70.0, 60, 0, 0], [65.0, 55, 40, 0], [60.0, 60, 30, 20]])
    # task 0: max(50, 70, 65) - 60 = 10; task 1: max(60, 55) - 60 = 0; task 2: 40 - 30 = 10
    np.testing.assert_allclose(cm.forgetting(a), 20 / 3, rtol=1e-6)


def test_single_task_and_partial_stream():
    m1 = cm.continual_metrics(np.array([[42.0]]), np.array([3.0]))
    assert float(m1["ACC"]) == 42.0 and float(m1["PL"]) == 42.0
    assert np.isnan(m1["F"]) and np.isnan(m1["BWT"]) and np.isnan(m1["FWT"])
    partial = A.copy()
    partial[2] = 0.0  # not evaluated yet
    m2 = cm.metrics_so_far(partial, 2, B)
    np.testing.assert_allclose(m2["ACC"], 75.0)
    np.testing.assert_allclose(m2["F"], 20.0)  # 80 - 60
    np.testing.assert_allclose(m2["FWT"], 10.0)  # a[0,1] - b[1]


def test_relative_gain_and_delta_I_E():
    np.testing.assert_allclose(cm.relative_gain([50.0, 80.0], [50.0, 40.0]), 150.0, rtol=1e-6)
    assert np.isnan(cm.relative_gain([1.0], [0.0]))
    out = cm.delta_I_E(
        np.array([55.0, 45.0, 2.0]), np.array([50.0, 50.0, 4.0]), [True, True, False]
    )
    # I = [+10, -10, +50] (the third is lower-better: 2 vs 4 is a 50% improvement)
    np.testing.assert_allclose(out["I"], [10.0, -10.0, 50.0], rtol=1e-6)
    np.testing.assert_allclose(out["delta_I"], 50 / 3, rtol=1e-6)
    np.testing.assert_allclose(out["delta_E"], 10 / 3, rtol=1e-6)
    # docs/methods.md section 5.1: dE averages the drops only; the mean absolute change would be
    # 70 / 3.
    assert abs(float(out["delta_E"]) - np.abs(out["I"]).mean()) > 1.0


def test_bad_shapes():
    with pytest.raises(ValueError, match="square"):
        cm.continual_metrics(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="base scores must have shape"):
        cm.forward_transfer(A, np.zeros(2))
    with pytest.raises(ValueError, match="num_done"):
        cm.metrics_so_far(A, 0)
