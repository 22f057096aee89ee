"""Adapt-∞ (docs/methods.md section 3) as jitted pure functions: sample vectors, k-means, scorers,
selection, pruning."""

from jaxlvlm.methods.adapt_inf.ccs import ccs_top_down, selection_priority, trim_thresholds
from jaxlvlm.methods.adapt_inf.cluster_report import format_task_cluster_table, task_cluster_counts
from jaxlvlm.methods.adapt_inf.clustering import ClusterResult, cluster_step
from jaxlvlm.methods.adapt_inf.elbow import (
    choose_elbow,
    elbow_curve,
    format_elbow,
    resolve_num_clusters,
)
from jaxlvlm.methods.adapt_inf.kmeans import (
    KMeansState,
    assign,
    assign_nonempty,
    init_state,
    kmeans,
    kmeans_plusplus,
    lloyd_step,
    lloyd_step_events,
    minibatch_step,
    reseed_empty,
)
from jaxlvlm.methods.adapt_inf.projection import normalize_rows, rademacher_project
from jaxlvlm.methods.adapt_inf.sample_grads import (
    answer_nll,
    flatten_per_sample,
    per_sample_grads,
    sample_vectors,
)
from jaxlvlm.methods.adapt_inf.scorers import (
    SCORER_NAMES,
    drop_image_tokens,
    score_batch,
    zero_image,
)
from jaxlvlm.methods.adapt_inf.select_pool import PoolSelection, select_pool, select_stacked
from jaxlvlm.methods.adapt_inf.selection import (
    ccs_sample,
    choose_scorers,
    cluster_budgets,
    cluster_masks,
    hist_entropy,
    random_select,
    scorer_entropies,
    select_samples,
)
from jaxlvlm.methods.adapt_inf.semdedup import (
    cluster_redundancy,
    keep_least_redundant,
    semdedup_keep,
)
from jaxlvlm.methods.adapt_inf.settings import PAPER_SCORERS, AdaptInfSettings

__all__ = [
    "AdaptInfSettings",
    "ClusterResult",
    "KMeansState",
    "PAPER_SCORERS",
    "PoolSelection",
    "SCORER_NAMES",
    "answer_nll",
    "assign",
    "assign_nonempty",
    "ccs_sample",
    "ccs_top_down",
    "choose_elbow",
    "choose_scorers",
    "cluster_budgets",
    "cluster_masks",
    "cluster_redundancy",
    "cluster_step",
    "drop_image_tokens",
    "elbow_curve",
    "flatten_per_sample",
    "format_elbow",
    "format_task_cluster_table",
    "hist_entropy",
    "init_state",
    "keep_least_redundant",
    "kmeans",
    "kmeans_plusplus",
    "lloyd_step",
    "lloyd_step_events",
    "minibatch_step",
    "normalize_rows",
    "per_sample_grads",
    "rademacher_project",
    "random_select",
    "reseed_empty",
    "resolve_num_clusters",
    "sample_vectors",
    "score_batch",
    "scorer_entropies",
    "select_pool",
    "select_samples",
    "select_stacked",
    "selection_priority",
    "semdedup_keep",
    "task_cluster_counts",
    "trim_thresholds",
    "zero_image",
]
