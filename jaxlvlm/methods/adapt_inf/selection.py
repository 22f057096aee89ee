"""Adapt-∞ multi-way data selection: scorer choice per cluster, exact budgets, CCS sampling.

For each pseudo-skill cluster the scorer whose standardised score histogram has the highest
entropy is chosen (eq. 13); the step's budget is split equally over clusters, small clusters
giving all they have; inside a cluster, coverage-centric stratified sampling (CCS) draws the
cluster's budget across the range of the chosen score. All functions are jittable and use masks,
so a pool is a fixed-size array with a ``valid`` flag per row.

Our choices where METHODS.md §3 leaves room ([O]):
- CCS visits strata from the smallest to the largest (ties: higher stratum first), as the original
  CCS algorithm does, which makes the budget exact; when the trimmed range holds fewer samples than
  the budget, the rest is drawn at random from the trimmed-away tails, so a cluster always gives
  exactly min(budget, size).
- Histogram: ±4 in z-units, all 50 bins, values outside dropped (the intended form of the code).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def hist_entropy(x: jax.Array, mask: jax.Array, bins: int = 50, z_range: float = 4.0) -> jax.Array:
    """Shannon entropy (bits) of the histogram of z-scored x over the masked rows.

    x [n], mask [n] bool -> scalar. Bins: ``bins`` equal bins over [-z_range, z_range]; empty bins
    get probability machine-epsilon. A constant score gives 0 bits.
    """
    x = x.astype(jnp.float32)
    w = mask.astype(jnp.float32)
    count = jnp.maximum(jnp.sum(w), 1.0)
    mean = jnp.sum(x * w) / count
    std = jnp.sqrt(jnp.sum(w * (x - mean) ** 2) / count)
    z = jnp.where(std > 0, (x - mean) / jnp.where(std > 0, std, 1.0), 0.0)
    width = 2.0 * z_range / bins
    idx = jnp.floor((z + z_range) / width).astype(jnp.int32)
    idx = jnp.where(z == z_range, bins - 1, idx)  # right edge belongs to the last bin
    inside = (idx >= 0) & (idx < bins)
    counts = jnp.zeros((bins,), jnp.float32).at[jnp.clip(idx, 0, bins - 1)].add(w * inside)
    p = counts / jnp.maximum(jnp.sum(counts), 1.0)
    p = jnp.where(p > 0, p, jnp.finfo(jnp.float32).eps)
    return -jnp.sum(p * jnp.log2(p))


@functools.partial(jax.jit, static_argnames=("num_clusters", "bins"))
def choose_scorers(
    scores: jax.Array, labels: jax.Array, valid: jax.Array, num_clusters: int, bins: int = 50
) -> jax.Array:
    """Eq. (13): per cluster, the index of the scorer with the highest histogram entropy.

    scores [S, n], labels [n] int, valid [n] bool -> [K] int32.
    """
    cluster_mask = (labels[None, :] == jnp.arange(num_clusters)[:, None]) & valid[None, :]
    ent = jax.vmap(lambda m: jax.vmap(lambda s: hist_entropy(s, m, bins))(scores))(cluster_mask)
    return jnp.argmax(ent, axis=1).astype(jnp.int32)  # ent: [K, S]


@jax.jit
def cluster_budgets(sizes: jax.Array, total: jax.Array | int) -> jax.Array:
    """Equal split of ``total`` over clusters, smallest first, a small cluster giving all it has.

    sizes [K] int -> budgets [K] int32 with budgets <= sizes and sum = min(total, sum(sizes))
    exactly: each cluster, visited in ascending size, takes min(size, ceil(remaining / clusters
    left)), so any shortfall is re-spread over the larger clusters that follow.
    """
    sizes = sizes.astype(jnp.int32)
    k = sizes.shape[0]
    order = jnp.argsort(sizes, stable=True)

    def visit(carry, i):
        remaining, left = carry
        share = -(-remaining // left)
        take = jnp.minimum(sizes[order[i]], share)
        return (remaining - take, left - 1), take

    _, takes = jax.lax.scan(visit, (jnp.asarray(total, jnp.int32), jnp.int32(k)), jnp.arange(k))
    return jnp.zeros((k,), jnp.int32).at[order].set(takes)


def _rank_within_groups(group: jax.Array, priority: jax.Array, num_groups: int) -> jax.Array:
    """Rank of each row inside its group when rows are ordered by ascending priority."""
    order = jnp.lexsort((priority, group))
    sizes = jnp.zeros((num_groups + 1,), jnp.int32).at[group].add(1)
    starts = jnp.cumsum(sizes) - sizes
    positions = jnp.zeros_like(group).at[order].set(jnp.arange(group.shape[0], dtype=group.dtype))
    return positions - starts[group]


@functools.partial(jax.jit, static_argnames=("strata",))
def ccs_sample(
    scores: jax.Array,
    mask: jax.Array,
    budget: jax.Array | int,
    key: jax.Array,
    strata: int = 50,
    trim: float = 0.05,
) -> jax.Array:
    """Coverage-centric stratified sampling of ``budget`` rows among the masked ones.

    scores [n], mask [n] bool -> selected [n] bool with exactly min(budget, sum(mask)) rows.
    The lowest and highest ``trim`` fraction are set aside; [q_trim, q_{1-trim}] is cut into
    ``strata`` equal-width strata; strata are visited smallest first, each giving
    min(size, ceil(remaining budget / strata left)) rows drawn uniformly at random.
    """
    n = scores.shape[0]
    x = scores.astype(jnp.float32)
    budget = jnp.minimum(jnp.asarray(budget, jnp.int32), jnp.sum(mask).astype(jnp.int32))
    xm = jnp.where(mask, x, jnp.nan)
    lo = jnp.nanquantile(xm, trim)
    hi = jnp.nanquantile(xm, 1.0 - trim)
    inrange = mask & (x >= lo) & (x <= hi)
    width = (hi - lo) / strata
    stratum = jnp.floor((x - lo) / jnp.where(width > 0, width, 1.0))
    stratum = jnp.clip(jnp.where(width > 0, stratum, 0.0), 0, strata - 1).astype(jnp.int32)
    counts = jnp.zeros((strata,), jnp.int32).at[stratum].add(inrange.astype(jnp.int32))
    # Visit order: ascending count, ties broken towards the top stratum.
    visit_order = jnp.lexsort((-jnp.arange(strata), counts))

    def visit(carry, s):
        remaining, left = carry
        take = jnp.minimum(counts[s], -(-remaining // left))
        return (remaining - take, left - 1), take

    (remaining, _), takes = jax.lax.scan(visit, (budget, jnp.int32(strata)), visit_order)
    take_per_stratum = jnp.zeros((strata,), jnp.int32).at[visit_order].set(takes)

    key_in, key_out = jax.random.split(key)
    group = jnp.where(inrange, stratum, strata)
    rank = _rank_within_groups(group, jax.random.uniform(key_in, (n,)), strata)
    chosen = inrange & (rank < take_per_stratum[stratum])
    # Budget larger than the trimmed range: fill from the set-aside tails at random.
    tails = mask & ~inrange
    tail_rank = _rank_within_groups(jnp.where(tails, 0, 1), jax.random.uniform(key_out, (n,)), 1)
    return chosen | (tails & (tail_rank < remaining))


@functools.partial(jax.jit, static_argnames=("num_clusters", "strata", "bins"))
def select_samples(
    scores: jax.Array,
    labels: jax.Array,
    valid: jax.Array,
    num_clusters: int,
    budget: jax.Array | int,
    key: jax.Array,
    fixed_scorer: int | jax.Array = -1,
    strata: int = 50,
    trim: float = 0.05,
    bins: int = 50,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Adapt-∞ selection of ``budget`` pool rows.

    scores [S, n] (one row per scorer), labels [n] cluster ids, valid [n] bool ->
    (selected [n] bool with exactly min(budget, sum(valid)) rows, scorer index per cluster [K],
    budgets [K]). ``fixed_scorer`` >= 0 uses that scorer everywhere (single-scorer baselines).
    """
    cluster_mask = (labels[None, :] == jnp.arange(num_clusters)[:, None]) & valid[None, :]
    sizes = jnp.sum(cluster_mask, axis=1)
    budgets = cluster_budgets(sizes, budget)
    chosen = choose_scorers(scores, labels, valid, num_clusters, bins)
    chosen = jnp.where(jnp.asarray(fixed_scorer) >= 0, jnp.asarray(fixed_scorer, jnp.int32), chosen)
    keys = jax.random.split(key, num_clusters)
    picked = jax.vmap(lambda s, m, b, k: ccs_sample(s, m, b, k, strata, trim))(
        scores[chosen], cluster_mask, budgets, keys
    )
    return jnp.any(picked, axis=0), chosen, budgets


@jax.jit
def random_select(valid: jax.Array, budget: jax.Array | int, key: jax.Array) -> jax.Array:
    """Uniform random baseline: exactly min(budget, sum(valid)) valid rows, as a mask [n]."""
    rank = _rank_within_groups(jnp.where(valid, 0, 1), jax.random.uniform(key, valid.shape), 1)
    return valid & (rank < budget)
