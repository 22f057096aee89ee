"""config.method of mode 'lifelong': the approach, the stream, the budget and Adapt-inf's pieces."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from jaxlvlm.methods.adapt_inf.scorers import SCORER_NAMES
from jaxlvlm.methods.settings import BaseModelSettings, choose, require

APPROACHES = ("adapt_inf", "random", "scorer", "all", "sequential", "joint")


@dataclasses.dataclass(frozen=True)
class LifelongSettings(BaseModelSettings):
    """approach: adapt_inf | random | scorer | all | sequential | joint.
    scorer: the one scorer of approach 'scorer' (a name in SCORER_NAMES).
    stream: ((task, ...), ...): the tasks whose data.sources join the pool at each step.
    budget: samples trained per step; capacity: pool size kept after pruning (0 = 4 * budget).
    epochs: passes over the selection per step.
    num_clusters, kmeans_iters, minibatch_threshold, minibatch_size: the pseudo-skill k-means.
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
    num_clusters: int = 4
    kmeans_iters: int = 20
    minibatch_threshold: int = 20000
    minibatch_size: int = 2048
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

    @property
    def pool_capacity(self) -> int:
        return int(self.capacity) or 4 * int(self.budget)

    @property
    def tasks(self) -> list[str]:
        return [t for step in self.stream for t in step]
