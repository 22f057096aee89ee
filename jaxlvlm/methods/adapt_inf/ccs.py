"""Coverage-centric stratified sampling (CCS) as the Adapt-∞ authors run it, jitted.

Follows ``get_ccs_samples`` and ``set_outlier_threshold`` in the authors'
``data_selection/adapt-inf.py``:
- thresholds: the masked scores sorted ascending; low = sorted[floor(0.05 n)], high =
  sorted[floor(0.95 n)] (index picks, not interpolated quantiles);
- ``strata`` strata of equal width (high - low) / strata, each the half-open interval
  (left, right], visited from the TOP (highest scores) down; the sample at exactly ``low`` and
  the trimmed tails are never drawn, so a cluster can give fewer than its budget;
- a per-stratum quota q = ceil(budget / strata); a stratum with fewer candidates than q gives all
  of them and the quota becomes ceil((remaining - given) / strata left); a full stratum gives q
  drawn uniformly at random. The budget's rest after the last stratum stays unspent.

One slip is corrected by default: the code never caps a stratum at what is left of the budget, so
once ``remaining`` is spent it keeps giving q per stratum (a cluster budget of 16 with 50 strata
yields up to 50 rows; a negative quota even makes ``random.sample`` raise). ``capped=True`` (the
default) gives min(q, remaining); ``capped=False`` reproduces the code (a negative quota gives 0).

The random draw is explicit: a stratum gives its candidates of smallest ``priority`` (i.i.d.
uniform), the same distribution as ``random.sample``, and reproducible from one key.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxlvlm.methods.adapt_inf.selection import _rank_within_groups


def selection_priority(key: jax.Array, n: int) -> jax.Array:
    """The random order in which CCS draws inside a stratum: [n] float32 uniform in [0, 1)."""
    return jax.random.uniform(key, (n,), jnp.float32)


def trim_thresholds(scores: jax.Array, mask: jax.Array, trim: float = 0.05):
    """(low, high) = sorted masked scores at floor(trim n) and floor((1 - trim) n); n = sum(mask)."""
    n = jnp.sum(mask).astype(jnp.int32)
    ordered = jnp.sort(jnp.where(mask, scores.astype(jnp.float32), jnp.inf))
    nf = n.astype(jnp.float32)
    lo = jnp.floor(nf * jnp.float32(trim)).astype(jnp.int32)
    hi = jnp.floor(nf * jnp.float32(1.0 - trim)).astype(jnp.int32)
    last = jnp.maximum(n - 1, 0)
    return ordered[jnp.minimum(lo, last)], ordered[jnp.minimum(hi, last)]


def stratum_index(scores, mask, low, high, strata: int):
    """(in_range [n] bool, stratum [n] int32): stratum 0 is the top one, (high - w, high]."""
    x = scores.astype(jnp.float32)
    width = (high - low) / strata
    # Interior edges right_i = high - i * width for i = 1..strata-1; the bottom edge is low.
    interior = high - jnp.arange(1, strata, dtype=jnp.float32) * width
    stratum = jnp.sum(x[:, None] <= interior[None, :], axis=1).astype(jnp.int32)
    return mask & (x > low) & (x <= high), stratum


@functools.partial(jax.jit, static_argnames=("strata", "capped"))
def ccs_top_down(
    scores: jax.Array,
    mask: jax.Array,
    budget: jax.Array | int,
    priority: jax.Array,
    strata: int = 50,
    trim: float = 0.05,
    capped: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """The authors' CCS of one cluster.

    scores [n], mask [n] bool (the cluster), budget scalar, priority [n] -> (selected [n] bool,
    taken [strata] int32 rows given by each stratum, top first).
    """
    low, high = trim_thresholds(scores, mask, trim)
    in_range, stratum = stratum_index(scores, mask, low, high, strata)
    counts = jnp.zeros((strata,), jnp.int32).at[stratum].add(in_range.astype(jnp.int32))
    budget = jnp.asarray(budget, jnp.int32)

    def visit(carry, i):
        quota, remaining = carry
        have = counts[i]
        short = have < quota
        take = jnp.maximum(jnp.where(short, have, quota), 0)
        if capped:
            take = jnp.minimum(take, jnp.maximum(remaining, 0))
        left = strata - (i + 1)
        requota = -(-(remaining - take) // jnp.maximum(left, 1))
        quota = jnp.where(short & (left > 0), requota, quota)
        return (quota, remaining - take), take

    _, taken = jax.lax.scan(visit, (-(-budget // strata), budget), jnp.arange(strata))
    group = jnp.where(in_range, stratum, strata)
    rank = _rank_within_groups(group, priority, strata)
    return in_range & (rank < taken[stratum]), taken
