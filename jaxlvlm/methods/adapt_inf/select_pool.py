"""Adapt-∞ multi-way selection of one time step, driven by ``AdaptInfSettings``.

The procedure of the authors' ``data_selection/adapt-inf.py`` (``main`` with --kmeans --mwp
--ccs): per-cluster budgets (``assign_budget_to_cluster``); per cluster, the scorer whose
standardised histogram has the highest entropy (``get_mwp_score`` / ``get_dist_entropy``); then
CCS over that scorer inside the cluster (``get_ccs_samples``). Where the defaults differ from the
code (histogram edges, the CCS cap), settings.py says why.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import struct

from jaxlvlm.methods.adapt_inf.ccs import ccs_top_down, selection_priority
from jaxlvlm.methods.adapt_inf.selection import cluster_budgets, cluster_masks, scorer_entropies
from jaxlvlm.methods.adapt_inf.settings import AdaptInfSettings


@struct.dataclass
class PoolSelection:
    """selected [n] bool; scorer [K] int32 index into settings.scorers; budgets [K] int32;
    taken [K] int32 rows actually selected per cluster (CCS can give less than the budget);
    entropy [K, S] histogram entropies (bits) behind the choice."""

    selected: jax.Array
    scorer: jax.Array
    budgets: jax.Array
    taken: jax.Array
    entropy: jax.Array


@functools.partial(jax.jit, static_argnames=("num_clusters", "settings"))
def select_stacked(
    scores: jax.Array,
    labels: jax.Array,
    valid: jax.Array,
    num_clusters: int,
    budget: jax.Array | int,
    key: jax.Array,
    settings: AdaptInfSettings,
) -> PoolSelection:
    """select_pool on scores [S, n] already stacked in the order of settings.scorers."""
    cluster_mask = cluster_masks(labels, valid, num_clusters)
    sizes = jnp.sum(cluster_mask, axis=1)
    budgets = cluster_budgets(sizes, budget, rule=settings.budget_rule)
    entropy = scorer_entropies(
        scores, labels, valid, num_clusters, settings.hist_bins, settings.hist_edges
    )
    chosen = jnp.argmax(entropy, axis=1).astype(jnp.int32)
    priority = selection_priority(key, labels.shape[0])
    picked, _ = jax.vmap(
        lambda s, m, b: ccs_top_down(
            s, m, b, priority, settings.ccs_strata, settings.ccs_trim, settings.ccs_capped
        )
    )(scores[chosen], cluster_mask, budgets)
    return PoolSelection(
        selected=jnp.any(picked, axis=0),
        scorer=chosen,
        budgets=budgets,
        taken=jnp.sum(picked, axis=1).astype(jnp.int32),
        entropy=entropy,
    )


def select_pool(
    scores: Mapping[str, jax.Array],
    labels: jax.Array,
    valid: jax.Array,
    num_clusters: int,
    budget: int,
    key: jax.Array,
    settings: AdaptInfSettings | None = None,
) -> PoolSelection:
    """Adapt-∞ selection of about ``budget`` pool rows.

    Args:
      scores: name -> [n] for at least the names in settings.scorers (others are ignored).
      labels: [n] cluster ids in [0, num_clusters); valid: [n] bool.
      budget: the step's training budget; key: this step's PRNG key (CCS draws).
      settings: None = AdaptInfSettings() (the defaults).
    Returns:
      PoolSelection; settings.scorers[int(scorer[k])] names cluster k's scorer.
    """
    settings = settings or AdaptInfSettings()
    missing = [s for s in settings.scorers if s not in scores]
    if missing:
        raise KeyError(f"select_pool: scores lack {missing}; have {sorted(scores)}")
    stacked = jnp.stack([jnp.asarray(scores[s], jnp.float32) for s in settings.scorers])
    return select_stacked(
        stacked, jnp.asarray(labels), jnp.asarray(valid, bool), num_clusters, budget, key, settings
    )
