"""Adapt-∞ (METHODS.md §3) as jitted pure functions: sample vectors, k-means, scorers, selection, pruning."""

from jaxlvlm.methods.adapt_inf.kmeans import (
    KMeansState,
    assign,
    init_state,
    kmeans,
    kmeans_plusplus,
    lloyd_step,
    minibatch_step,
)
from jaxlvlm.methods.adapt_inf.projection import normalize_rows, rademacher_project
from jaxlvlm.methods.adapt_inf.sample_grads import (
    answer_nll,
    flatten_per_sample,
    per_sample_grads,
    sample_vectors,
)
from jaxlvlm.methods.adapt_inf.scorers import SCORER_NAMES, drop_image_tokens, score_batch
from jaxlvlm.methods.adapt_inf.selection import (
    ccs_sample,
    choose_scorers,
    cluster_budgets,
    hist_entropy,
    random_select,
    select_samples,
)
from jaxlvlm.methods.adapt_inf.semdedup import (
    cluster_redundancy,
    keep_least_redundant,
    semdedup_keep,
)

__all__ = [
    "KMeansState",
    "SCORER_NAMES",
    "answer_nll",
    "assign",
    "ccs_sample",
    "choose_scorers",
    "cluster_budgets",
    "cluster_redundancy",
    "drop_image_tokens",
    "flatten_per_sample",
    "hist_entropy",
    "init_state",
    "keep_least_redundant",
    "kmeans",
    "kmeans_plusplus",
    "lloyd_step",
    "minibatch_step",
    "normalize_rows",
    "per_sample_grads",
    "rademacher_project",
    "random_select",
    "sample_vectors",
    "score_batch",
    "select_samples",
    "semdedup_keep",
]
