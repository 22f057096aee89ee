"""Intervals for the method benchmark (docs/benchmark.md): over seeds and over paired test samples.

seed_interval: mean +- t(0.975, n-1) x sd / sqrt(n) of one number per seed.
paired_bootstrap: the difference of two approaches' mean per-sample scores on the same test samples,
with a percentile interval from resampling the samples (the same resample for both approaches).
verdict: the benchmark's words for a difference and its interval.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

# Student t 0.975 quantiles for 1..30 degrees of freedom (standard tables, 4 decimals).
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"a t interval needs at least 2 values (df >= 1), got df={df}")
    if df <= len(_T975):
        return _T975[df - 1]
    # Cornish-Fisher expansion around the normal quantile: within 1e-4 of the table for df > 30.
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclasses.dataclass(frozen=True)
class Interval:
    """mean, and the interval [low, high] around it; n: how many values (seeds or resamples)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def seed_interval(values: Sequence[float]) -> Interval:
    """95% t interval of the mean of one value per seed ([n], n >= 2)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need one value per seed for at least 2 seeds, got {list(x.ravel())}")
    m = float(x.mean())
    h = t975(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return Interval(m, m - h, m + h, len(x))


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0
) -> Interval:
    """Mean of a - b over test samples with a 95% percentile interval.

    a, b: [N] per-sample scores of two approaches on the same N test samples, in the same order
    (pooled over seeds: the samples of every seed concatenated in the same order for both).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(
            f"paired scores must be two [N] arrays of one shape, got {a.shape}, {b.shape}"
        )
    d = a - b
    idx = np.random.default_rng(seed).integers(0, len(d), size=(resamples, len(d)))
    means = d[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(d.mean()), float(low), float(high), resamples)


def verdict(diff: Interval, paper_sign: int = 1) -> str:
    """'shown' (interval excludes zero in the paper's direction), 'reversed' (excludes it the other
    way) or 'not separated' (crosses zero). paper_sign: +1 when the paper says a > b, -1 if a < b."""
    if not diff.excludes_zero():
        return "not separated"
    return "shown" if (diff.mean > 0) == (paper_sign > 0) else "reversed"
