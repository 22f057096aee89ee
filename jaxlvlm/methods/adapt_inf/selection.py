"""Adapt-∞ multi-way data selection: scorer choice per cluster, exact budgets, CCS sampling.

For each pseudo-skill cluster the scorer whose standardised score histogram has the highest
entropy is chosen (eq. 13); the step's budget is split equally over clusters, small clusters
giving all they have; inside a cluster, coverage-centric stratified sampling (CCS) draws the
cluster's budget across the range of the chosen score. All functions are jittable and use masks,
so a pool is a fixed-size array with a ``valid`` flag per row.

Two budget rules and two histograms live here:
- ``cluster_budgets(rule='code')`` is the authors' ``assign_budget_to_cluster``
  (``data_selection/adapt-inf.py``); ``rule='exact'`` (this function's default, which the lifelong
  runner's tests rely on) hits the total exactly.
- ``hist_entropy(edges='z')`` bins the z-scores over ±4 in z-units, all bins counted: the paper's
  meaning and the default. ``edges='code'`` reproduces the authors' ``get_dist_entropy`` exactly,
  slip included: bin edges at ±4 times the RAW standard deviation (applied to z-scores) and the
  first bin never counted.
``ccs_sample`` / ``select_samples`` are the earlier exact-budget variant ([O]: strata visited
smallest first, the budget's rest drawn from the trimmed tails). The authors' CCS and the
settings-driven selection are in ``ccs.py`` and ``select_pool.py``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

HIST_EDGES = ("z", "code")
BUDGET_RULES = ("exact", "code")
# The probability given to an empty bin: numpy's float64 machine epsilon, as get_dist_entropy uses
# (a normal float32 number, so the float32 computation keeps it).
EMPTY_BIN_P = 2.0**-52


def _histogram_counts(z, w, bins, z_range, edges, raw_std):
    if edges == "z":
        width = 2.0 * z_range / bins
        idx = jnp.floor((z + z_range) / width).astype(jnp.int32)
        idx = jnp.where(z == z_range, bins - 1, idx)  # right edge belongs to the last bin
        inside = (idx >= 0) & (idx < bins)
        return jnp.zeros((bins,), jnp.float32).at[jnp.clip(idx, 0, bins - 1)].add(w * inside)
    # Authors' get_dist_entropy: ``bins`` edges linspace(-4 sd, 4 sd) with sd the raw standard
    # deviation; bin i (1..bins-1) counts edges[i-1] < z <= edges[i]; bin 0 stays empty.
    raw_sd = z_range * raw_std
    grid = -raw_sd + jnp.arange(bins, dtype=jnp.float32) * (2.0 * raw_sd / (bins - 1))
    grid = grid.at[-1].set(raw_sd)
    idx = jnp.searchsorted(grid, z, side="left")
    inside = (idx >= 1) & (idx < bins)
    return jnp.zeros((bins,), jnp.float32).at[jnp.clip(idx, 0, bins - 1)].add(w * inside)


def hist_entropy(
    x: jax.Array,
    mask: jax.Array,
    bins: int = 50,
    z_range: float = 4.0,
    edges: str = "z",
) -> jax.Array:
    """Shannon entropy (bits) of the histogram of z-scored x over the masked rows.

    x [n], mask [n] bool -> scalar. ``edges='z'``: ``bins`` equal bins over [-z_range, z_range]
    in z-units (the paper's meaning); ``edges='code'``: the authors' get_dist_entropy, edges at
    ±z_range raw standard deviations and the first bin never counted. Values outside are dropped;
    empty bins get probability 2^-52 (numpy's float64 epsilon, as the code). NaN scores count as 0
    (the code's nan_to_num). A constant score gives ~0 bits (the code's 0/0 gives NaN there).
    """
    x = jnp.nan_to_num(x.astype(jnp.float32))
    w = mask.astype(jnp.float32)
    count = jnp.maximum(jnp.sum(w), 1.0)
    mean = jnp.sum(x * w) / count
    std = jnp.sqrt(jnp.sum(w * (x - mean) ** 2) / count)
    z = jnp.where(std > 0, (x - mean) / jnp.where(std > 0, std, 1.0), 0.0)
    counts = _histogram_counts(z, w, bins, z_range, edges, std)
    p = counts / jnp.maximum(jnp.sum(counts), 1.0)
    p = jnp.where(p > 0, p, EMPTY_BIN_P)
    return -jnp.sum(p * jnp.log2(p))


def cluster_masks(labels: jax.Array, valid: jax.Array, num_clusters: int) -> jax.Array:
    """[K, n] bool: row k marks the valid rows of cluster k. labels [n], valid [n]."""
    return (labels[None, :] == jnp.arange(num_clusters)[:, None]) & valid[None, :]


def scorer_entropies(
    scores: jax.Array,
    labels: jax.Array,
    valid: jax.Array,
    num_clusters: int,
    bins: int = 50,
    edges: str = "z",
) -> jax.Array:
    """hist_entropy of every scorer in every cluster: scores [S, n] -> [K, S] bits."""
    cluster_mask = cluster_masks(labels, valid, num_clusters)
    one = lambda s, m: hist_entropy(s, m, bins, edges=edges)  # noqa: E731
    return jax.vmap(lambda m: jax.vmap(lambda s: one(s, m))(scores))(cluster_mask)


@functools.partial(jax.jit, static_argnames=("num_clusters", "bins", "edges"))
def choose_scorers(
    scores: jax.Array,
    labels: jax.Array,
    valid: jax.Array,
    num_clusters: int,
    bins: int = 50,
    edges: str = "z",
) -> jax.Array:
    """Eq. (13): per cluster, the index of the scorer with the highest histogram entropy.

    scores [S, n], labels [n] int, valid [n] bool -> [K] int32 (ties: the first scorer, as
    np.argmax in the authors' get_mwp_score).
    """
    ent = scorer_entropies(scores, labels, valid, num_clusters, bins, edges)
    return jnp.argmax(ent, axis=1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("rule",))
def cluster_budgets(sizes: jax.Array, total: jax.Array | int, rule: str = "exact") -> jax.Array:
    """Equal split of ``total`` over clusters, smallest first, a small cluster giving all it has.

    sizes [K] int -> budgets [K] int32 with budgets <= sizes. Clusters are visited in ascending
    size (stable order).
    - 'exact': each takes min(size, ceil(remaining / clusters left)), so the sum is exactly
      min(total, sum(sizes)).
    - 'code': the authors' assign_budget_to_cluster (data_selection/adapt-inf.py): a per-cluster
      share b = ceil(total / K); a cluster smaller than b gives all it has and the share of every
      later cluster grows by ceil((b - size) / clusters left). The ceilings can make the sum exceed
      ``total`` by up to about K. Where the code divides by zero (the largest cluster is still
      smaller than its share, i.e. total > sum(sizes)), that cluster gives all it has.
    """
    if rule not in BUDGET_RULES:
        raise ValueError(f"budget rule {rule!r}: choose one of {BUDGET_RULES}")
    sizes = sizes.astype(jnp.int32)
    k = sizes.shape[0]
    order = jnp.argsort(sizes, stable=True)
    total = jnp.asarray(total, jnp.int32)

    def visit_exact(carry, i):
        remaining, left = carry
        take = jnp.minimum(sizes[order[i]], -(-remaining // left))
        return (remaining - take, left - 1), take

    def visit_code(share, i):
        size = sizes[order[i]]
        short = size < share
        left = jnp.maximum(k - i - 1, 1)
        grown = share + (-(-(share - size) // left))
        return jnp.where(short, grown, share), jnp.where(short, size, share)

    if rule == "exact":
        _, takes = jax.lax.scan(visit_exact, (total, jnp.int32(k)), jnp.arange(k))
    else:
        _, takes = jax.lax.scan(visit_code, -(-total // k), jnp.arange(k))
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
    cluster_mask = cluster_masks(labels, valid, num_clusters)
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
