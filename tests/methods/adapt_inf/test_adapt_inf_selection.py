"""Scorer choice by histogram entropy, exact budgets, CCS sampling and SemDeDup against numpy."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxlvlm.methods.adapt_inf.selection import (
    ccs_sample,
    choose_scorers,
    cluster_budgets,
    hist_entropy,
    random_select,
    select_samples,
)
from jaxlvlm.methods.adapt_inf.semdedup import cluster_redundancy, semdedup_keep


def _np_hist_entropy(x, bins=50):
    z = (x - x.mean()) / x.std()
    counts, _ = np.histogram(z, bins=bins, range=(-4, 4))
    p = counts / counts.sum()
    p = np.where(p > 0, p, np.finfo(np.float64).eps)
    return -(p * np.log2(p)).sum()


def test_hist_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    mask = np.ones(200, bool)
    mask[150:] = False
    got = float(hist_entropy(jnp.asarray(x), jnp.asarray(mask)))
    np.testing.assert_allclose(got, _np_hist_entropy(x[:150]), rtol=1e-4)
    # A constant score: one full bin (0 bits) plus 49 bins of probability 2^-52 (~0 bits).
    assert float(hist_entropy(jnp.ones(10), jnp.ones(10, bool))) < 1e-3


def test_choose_scorers_prefers_the_spread_scorer_per_cluster():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 100)
    bimodal = np.where(rng.random(200) > 0.5, 1.0, 0.0) + rng.normal(size=200) * 1e-3
    spread = rng.uniform(size=200)
    s0 = np.where(labels == 0, spread, bimodal)
    s1 = np.where(labels == 0, bimodal, spread)
    chosen = choose_scorers(
        jnp.asarray(np.stack([s0, s1])), jnp.asarray(labels), jnp.ones(200, bool), 2
    )
    np.testing.assert_array_equal(np.asarray(chosen), [0, 1])


def _np_budgets(sizes, total):
    out = np.zeros(len(sizes), int)
    remaining, left = total, len(sizes)
    for j in np.argsort(sizes, kind="stable"):
        out[j] = min(sizes[j], math.ceil(remaining / left))
        remaining -= out[j]
        left -= 1
    return out


def test_cluster_budgets_exact_and_match_reference():
    cases = [([5, 5], 9), ([1, 10, 10], 20), ([0, 3, 100, 7], 50), ([4, 4, 4], 100), ([9, 2, 6], 0)]
    rng = np.random.default_rng(2)
    cases += [(list(rng.integers(0, 30, size=6)), int(rng.integers(0, 120))) for _ in range(20)]
    for sizes, total in cases:
        got = np.asarray(cluster_budgets(jnp.asarray(sizes), total))
        assert got.sum() == min(total, sum(sizes)), (sizes, total, got)
        assert np.all(got <= np.asarray(sizes))
        np.testing.assert_array_equal(got, _np_budgets(np.asarray(sizes), total))


def test_ccs_sample_is_exact_and_covers_the_score_range():
    rng = np.random.default_rng(3)
    scores = np.concatenate(
        [rng.normal(size=900), rng.uniform(3, 13, size=100)]
    )  # a rare, spread-out tail
    mask = np.ones(1000, bool)
    mask[::10] = False
    for budget in (0, 1, 37, 200, 850, 900, 5000):
        sel = np.asarray(
            ccs_sample(jnp.asarray(scores), jnp.asarray(mask), budget, jax.random.key(budget))
        )
        assert sel.sum() == min(budget, mask.sum()), budget
        assert not np.any(sel & ~mask)
    sel = np.asarray(ccs_sample(jnp.asarray(scores), jnp.asarray(mask), 100, jax.random.key(0)))
    # Coverage: the rare tail (10% of the data, half the score range) gets far more than the ~10
    # rows a uniform draw would give it.
    assert (sel & (scores > 3)).sum() >= 30
    # Trimming: nothing from the lowest 5% is taken while the budget fits in the trimmed range.
    lo = np.quantile(scores[mask], 0.05)
    assert not np.any(sel & (scores < lo))


def test_select_samples_and_random_select_budgets_exact():
    rng = np.random.default_rng(4)
    n = 300
    labels = rng.integers(0, 5, size=n)
    labels[labels == 4] = 3  # cluster 4 empty
    valid = rng.random(n) > 0.1
    scores = rng.normal(size=(3, n))
    for budget in (10, 75, 271, 1000):
        sel, chosen, budgets = select_samples(
            jnp.asarray(scores),
            jnp.asarray(labels),
            jnp.asarray(valid),
            5,
            budget,
            jax.random.key(0),
        )
        sel, budgets = np.asarray(sel), np.asarray(budgets)
        assert sel.sum() == min(budget, valid.sum())
        for k in range(5):
            assert (sel & (labels == k)).sum() == budgets[k]
        assert budgets[4] == 0
        assert np.asarray(chosen).shape == (5,)
        rs = np.asarray(random_select(jnp.asarray(valid), budget, jax.random.key(1)))
        assert rs.sum() == min(budget, valid.sum()) and not np.any(rs & ~valid)
    _, fixed, _ = select_samples(
        jnp.asarray(scores),
        jnp.asarray(labels),
        jnp.asarray(valid),
        5,
        50,
        jax.random.key(0),
        fixed_scorer=2,
    )
    np.testing.assert_array_equal(np.asarray(fixed), [2] * 5)


def test_cluster_redundancy_matches_numpy():
    rng = np.random.default_rng(5)
    e = rng.normal(size=(23, 6))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    labels = rng.integers(0, 3, size=23)
    valid = np.ones(23, bool)
    valid[4] = False
    r = np.asarray(
        cluster_redundancy(
            jnp.asarray(e, jnp.float32), jnp.asarray(labels), jnp.asarray(valid), block=5
        )
    )
    for j in range(23):
        earlier = [i for i in range(j) if labels[i] == labels[j] and valid[i]]
        ref = max((e[i] @ e[j] for i in earlier), default=-np.inf) if valid[j] else np.inf
        np.testing.assert_allclose(r[j], ref, rtol=1e-5, atol=1e-6)


def test_semdedup_keeps_the_least_redundant():
    rng = np.random.default_rng(6)
    d = 32
    base = rng.normal(size=(6, d))  # six distinct samples, two clusters of three
    rows, is_dup = [], []
    for b in base:
        rows.append(b)
        is_dup.append(False)
    for b, noise in itertools.product(base[[0, 3]], (0.01, 0.02)):
        rows.append(b + noise * rng.normal(size=d))  # near-duplicates arriving later
        is_dup.append(True)
    e = np.asarray(rows)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 0, 1, 1])
    keep = np.asarray(
        semdedup_keep(
            jnp.asarray(e, jnp.float32), jnp.asarray(labels), jnp.ones(10, bool), 2, 6, block=4
        )
    )
    assert keep.sum() == 6
    np.testing.assert_array_equal(keep, ~np.asarray(is_dup))
