"""The Adapt-∞ authors' selection procedure, restated in numpy from reading their code.

Source read: ``adymaharana/adapt-inf``, ``data_selection/adapt-inf.py`` (functions
``get_dist_entropy``, ``get_mwp_score``, ``assign_budget_to_cluster`` without score weighting,
``set_outlier_threshold``, ``get_ccs_samples`` and the --kmeans --mwp --ccs branch of ``main``).
Written anew; the only change is that ``random.sample`` becomes "the candidates of smallest
priority", so both sides can share one random draw. ``cap_at_remaining`` adds jaxlvlm's
correction (a stratum never gives more than what is left of the budget); False is the code.
"""

from __future__ import annotations

import math

import numpy as np


def dist_entropy(x, nbins=50):
    """get_dist_entropy: z-scores binned on edges at +-4 RAW standard deviations, bin 0 empty."""
    x = np.nan_to_num(np.asarray(x, np.float64))
    sd = np.std(x)
    z = (x - np.mean(x)) / sd
    edges = np.linspace(-4 * sd, 4 * sd, nbins)
    counts = np.zeros(nbins)
    for i in range(1, nbins):
        counts[i] = np.count_nonzero((z > edges[i - 1]) & (z <= edges[i]))
    p = counts / counts.sum()
    p = np.where(p == 0, np.finfo(float).eps, p)
    return float(-np.sum(p * np.log2(p)))


def cluster_budgets(sizes, total):
    """assign_budget_to_cluster (equal split, smallest cluster first, deficits re-spread)."""
    k = len(sizes)
    if min(sizes) * k >= total:
        return [math.ceil(total / k)] * k
    order = np.argsort(sizes, kind="stable")
    share = math.ceil(total / k)
    per_visit = []
    for i in range(k):
        size = int(sizes[order[i]])
        if size < share:
            per_visit.append(size)
            share += math.ceil((share - size) / (k - i - 1))
        else:
            per_visit.append(share)
    return [per_visit[j] for j in np.argsort(order)]


def ccs(scores, bins, budget, priority, cap_at_remaining=False):
    """get_ccs_samples: strata of (left, right] from the top down, quota ceil(budget / bins)."""
    ordered = np.sort(scores)
    low = ordered[int(len(ordered) * 0.05)]
    high = ordered[int(len(ordered) * 0.95)]
    right = high
    remaining = budget
    quota = math.ceil(budget / bins)
    chosen = []
    for i in range(bins):
        left = right - (high - low) / bins
        candidates = [j for j, v in enumerate(scores) if left < v <= right]
        if len(candidates) < quota:
            give = candidates
            if cap_at_remaining:
                give = sorted(candidates, key=lambda j: priority[j])[: max(remaining, 0)]
            chosen.extend(give)
            if i + 1 < bins:
                quota = math.ceil((remaining - len(give)) / (bins - (i + 1)))
                remaining -= len(give)
        else:
            take = max(quota, 0)
            if cap_at_remaining:
                take = min(take, max(remaining, 0))
            chosen.extend(sorted(candidates, key=lambda j: priority[j])[:take])
            remaining -= take
        right = left
    return chosen


def select(scores: dict, labels, num_clusters, budget, priority, bins=50, cap_at_remaining=False):
    """main(--kmeans --mwp --ccs) from given labels: (scorer name per cluster, budgets, indices)."""
    labels = np.asarray(labels)
    names = list(scores)
    sizes = [int(np.sum(labels == c)) for c in range(num_clusters)]
    budgets = cluster_budgets(sizes, budget)
    picked_names, selected = [], []
    for c in range(num_clusters):
        rows = np.flatnonzero(labels == c)
        entropies = [dist_entropy(np.asarray(scores[n])[rows]) for n in names]
        name = names[int(np.argmax(entropies))]
        picked_names.append(name)
        local = ccs(
            np.asarray(scores[name])[rows], bins, budgets[c], priority[rows], cap_at_remaining
        )
        selected.extend(rows[local].tolist())
    return picked_names, budgets, sorted(selected)
