"""Seed intervals, the paired bootstrap and the benchmark's verdict words."""

import numpy as np
import pytest

from jaxlvlm.eval.intervals import Interval, paired_bootstrap, seed_interval, t975, verdict


def test_t_quantiles_match_the_tables_and_the_expansion_beyond():
    assert t975(2) == pytest.approx(4.3027, abs=1e-4)
    assert t975(30) == pytest.approx(2.0423, abs=1e-4)
    assert t975(60) == pytest.approx(2.0003, abs=1e-4)  # table value 2.000298
    assert t975(10**6) == pytest.approx(1.96, abs=1e-3)
    with pytest.raises(ValueError, match="at least 2 values"):
        t975(0)


def test_seed_interval_of_three_seeds():
    iv = seed_interval([10.0, 12.0, 14.0])  # mean 12, sd 2
    assert iv.mean == pytest.approx(12.0)
    assert iv.half_width == pytest.approx(4.3027 * 2 / np.sqrt(3), rel=1e-4)
    assert iv.n == 3 and iv.excludes_zero()
    with pytest.raises(ValueError, match="at least 2 seeds"):
        seed_interval([1.0])


def test_paired_bootstrap_sees_a_consistent_gain_and_no_gain():
    rng = np.random.default_rng(0)
    b = rng.integers(0, 2, 600).astype(float)
    a = b.copy()
    a[rng.choice(600, 60, replace=False)] = 1.0  # a is b plus some flips to correct
    gain = paired_bootstrap(a, b)
    assert gain.mean == pytest.approx((a - b).mean()) and gain.low > 0
    same = paired_bootstrap(b, b)
    assert same.mean == same.low == same.high == 0.0
    with pytest.raises(ValueError, match="same shape|one shape"):
        paired_bootstrap(a, b[:10])


def test_verdict_words():
    assert verdict(Interval(2.0, 0.5, 3.5, 3)) == "shown"
    assert verdict(Interval(2.0, -0.5, 4.5, 3)) == "not separated"
    assert verdict(Interval(-2.0, -3.5, -0.5, 3)) == "reversed"
    assert verdict(Interval(-2.0, -3.5, -0.5, 3), paper_sign=-1) == "shown"
