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
from typing import ClassVar

from jaxlvlm.errors import ConfigError
from jaxlvlm.methods.adapt_inf.scorers import SCORER_NAMES
from jaxlvlm.methods.adapt_inf.selection import BUDGET_RULES, HIST_EDGES
from jaxlvlm.methods.settings import BaseModelSettings, choose, require

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


APPROACHES = ("adapt_inf", "random", "scorer", "all", "sequential", "joint")


@dataclasses.dataclass(frozen=True)
class LifelongSettings(BaseModelSettings):
    """approach: adapt_inf | random | scorer | all | sequential | joint.
    scorer: the one scorer of approach 'scorer' (a name in SCORER_NAMES).
    stream: ((task, ...), ...): the tasks whose data.sources join the pool at each step.
    budget: samples trained per step; capacity: pool size kept after pruning (0 = 4 * budget).
    epochs: passes over the selection per step.
    num_clusters ('elbow' = from elbow_ks), kmeans_iters, kmeans_batch, projection_seed, scorers,
    image_grounding, hist_bins, hist_edges, budget_rule, ccs_*: how Adapt-inf clusters and selects
    (AdaptInfSettings, whose docstring says where each default follows the authors' code).
    proj_dim, block_k, block_p: the Rademacher projection of the gradients.
    grad_layer: decoder layer whose LoRA gradients embed the samples (-1 = last).
    feature_batch: rows per feature pass; grad_mode: 'vmap' | 'mixture' per-sample gradients.
    joint_summary: a joint run's summary.json, for the relative gain.
    """

    MODE: ClassVar[str] = "lifelong"

    approach: str = "adapt_inf"
    scorer: str = "log_perplexity"
    stream: tuple = ()
    budget: int = 64
    capacity: int = 0
    epochs: int = 1
    num_clusters: int | str = 10
    elbow_ks: tuple = tuple(range(2, 17))
    kmeans_iters: int = 20
    kmeans_batch: int = 10240
    projection_seed: int = 0
    scorers: tuple = PAPER_SCORERS
    image_grounding: str = "zero_image"
    hist_bins: int = 50
    hist_edges: str = "z"
    budget_rule: str = "code"
    ccs_strata: int = 50
    ccs_trim: float = 0.05
    ccs_capped: bool = True
    proj_dim: int = 512
    block_k: int = 128
    block_p: int = 16384
    grad_layer: int = -1
    feature_batch: int = 16
    grad_mode: str = "vmap"
    joint_summary: str = ""

    def __post_init__(self):
        choose(self, "approach", self.approach, APPROACHES)
        choose(self, "scorer", self.scorer, SCORER_NAMES)
        choose(self, "grad_mode", self.grad_mode, ("vmap", "mixture"))
        require(
            bool(self.stream), "config.method.stream is empty: give the tasks joining at each step"
        )
        require(self.budget > 0, f"config.method.budget must be positive, got {self.budget}")
        self.check_base()
        tasks = [t for step in self.stream for t in step]
        require(
            len(set(tasks)) == len(tasks), f"config.method.stream repeats a task: {self.stream}"
        )
        try:
            _ = self.selection  # AdaptInfSettings checks its own fields
        except ValueError as e:
            raise ConfigError(f"config.method: {e}") from e

    @property
    def selection(self) -> AdaptInfSettings:
        """How this run clusters and selects (the method's own, hashable settings)."""
        return AdaptInfSettings(
            clusters=self.num_clusters,
            elbow_ks=tuple(self.elbow_ks),
            kmeans_iters=self.kmeans_iters,
            kmeans_batch=self.kmeans_batch,
            projection_seed=self.projection_seed,
            scorers=tuple(self.scorers),
            image_grounding=self.image_grounding,
            hist_bins=self.hist_bins,
            hist_edges=self.hist_edges,
            budget_rule=self.budget_rule,
            ccs_strata=self.ccs_strata,
            ccs_trim=self.ccs_trim,
            ccs_capped=self.ccs_capped,
        )

    @property
    def pool_capacity(self) -> int:
        return int(self.capacity) or 4 * int(self.budget)

    @property
    def tasks(self) -> list[str]:
        return [t for step in self.stream for t in step]
