"""Adapt-∞ selection settings: one frozen dataclass, defaults = the paper's meaning where the
authors' code carries an evident slip, the authors' code everywhere else.

Field by field (the authors' code is ``adymaharana/adapt-inf``):
- clusters: K, or 'elbow' to pick K from ``elbow_ks`` by the WSS elbow (elbow.py); the code's
  default is 10 (``--n-clusters``).
- kmeans_iters, kmeans_batch: clustering.cluster_step; fresh k-means++ every step with mini-batch
  size 10240, as ``cluster`` in data_selection/adapt-inf.py.
- projection_seed: the ONE Rademacher projection of the whole stream (grad_utils.py,
  ``collect_grads``: TRAK projector with seed=0 for every extraction). A runner derives the
  projection key from it once and keeps it in the method state.
- scorers: the scorer pool of eq. (13). Default: the paper's four; add 'grand' for the code's pool.
- image_grounding: 'zero_image' (default; grad_utils.py ``obtain_ig_score`` zeroes the image
  tensor) or 'drop_image_tokens' (the text-only pass without the image placeholders).
- hist_bins, hist_edges: 'z' (default, the paper's ±4 in z-units) or 'code' (get_dist_entropy's
  ±4 raw standard deviations, first bin empty: the slip, for exact reproduction).
- budget_rule: 'code' (default; assign_budget_to_cluster) or 'exact' (sum exactly the budget).
- ccs_strata, ccs_trim, ccs_capped: get_ccs_samples; capped=True corrects the code's overshoot
  (ccs.py), False reproduces it.
"""

from __future__ import annotations

import dataclasses

from jaxlvlm.methods.adapt_inf.scorers import SCORER_NAMES
from jaxlvlm.methods.adapt_inf.selection import BUDGET_RULES, HIST_EDGES

PAPER_SCORERS = ("log_perplexity", "el2n", "entropy", "image_grounding")
IMAGE_GROUNDING_MODES = ("zero_image", "drop_image_tokens")


@dataclasses.dataclass(frozen=True)
class AdaptInfSettings:
    """How Adapt-∞ clusters and selects (hashable: usable as a jit static argument)."""

    clusters: int | str = 10
    elbow_ks: tuple[int, ...] = tuple(range(2, 17))
    kmeans_iters: int = 20
    kmeans_batch: int = 10240
    projection_seed: int = 0
    scorers: tuple[str, ...] = PAPER_SCORERS
    image_grounding: str = "zero_image"
    hist_bins: int = 50
    hist_edges: str = "z"
    budget_rule: str = "code"
    ccs_strata: int = 50
    ccs_trim: float = 0.05
    ccs_capped: bool = True

    def __post_init__(self):
        if isinstance(self.clusters, str):
            if self.clusters != "elbow":
                raise ValueError(f"clusters={self.clusters!r}: give an int >= 1 or 'elbow'")
            if len(self.elbow_ks) < 3 or list(self.elbow_ks) != sorted(set(self.elbow_ks)):
                raise ValueError(f"elbow_ks must hold >= 3 ascending K, got {self.elbow_ks}")
        elif int(self.clusters) < 1:
            raise ValueError(f"clusters must be >= 1, got {self.clusters}")
        bad = [s for s in self.scorers if s not in SCORER_NAMES]
        if bad or not self.scorers or len(set(self.scorers)) != len(self.scorers):
            raise ValueError(
                f"scorers={self.scorers}: give distinct names from {SCORER_NAMES} (at least one)"
            )
        checks = (
            ("image_grounding", self.image_grounding, IMAGE_GROUNDING_MODES),
            ("hist_edges", self.hist_edges, HIST_EDGES),
            ("budget_rule", self.budget_rule, BUDGET_RULES),
        )
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"{name}={value!r}: choose one of {allowed}")
        if self.hist_bins < 2 or self.ccs_strata < 1 or not 0.0 <= self.ccs_trim < 0.5:
            raise ValueError(
                f"need hist_bins >= 2, ccs_strata >= 1 and 0 <= ccs_trim < 0.5; got "
                f"{self.hist_bins}, {self.ccs_strata}, {self.ccs_trim}"
            )
        if self.kmeans_iters < 1 or self.kmeans_batch < 1:
            raise ValueError("kmeans_iters and kmeans_batch must be >= 1")
