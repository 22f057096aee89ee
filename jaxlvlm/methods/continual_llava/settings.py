"""config.method of mode 'continual': the approach, the stream and Continual LLaVA's pool."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from jaxlvlm.methods.settings import BaseModelSettings, choose, require

APPROACHES = ("continual_llava", "seq_ft", "seq_lora", "replay", "joint")
EMBEDDINGS = ("minilm", "token_mean")


@dataclasses.dataclass(frozen=True)
class ContinualSettings(BaseModelSettings):
    """approach: continual_llava | seq_ft | seq_lora | replay | joint.
    stream: task names in training order (() = data.tasks order).
    pool_size, top_m, pool_rank: the pool's N, M and R (docs/methods.md section 2).
    snapshot_entries: K entries kept per finished task (0 = exact snapshot).
    include_current: the current task's own contextual weights enter its forward.
    align_steps, key_lr: stage-1 key alignment (eq. 11).
    embedding: 'minilm' (frozen all-MiniLM-L6-v2) | 'token_mean' (frozen LLM embeddings).
    replay_per_task: samples of every earlier task mixed in by 'replay'.
    """

    MODE: ClassVar[str] = "continual"

    approach: str = "continual_llava"
    stream: tuple = ()
    pool_size: int = 30
    top_m: int = 5
    pool_rank: int = 8
    snapshot_entries: int = 0
    include_current: bool = False
    align_steps: int = 20
    key_lr: float = 1e-3
    embedding: str = "minilm"
    replay_per_task: int = 0

    def __post_init__(self):
        choose(self, "approach", self.approach, APPROACHES)
        choose(self, "embedding", self.embedding, EMBEDDINGS)
        self.check_base()
        require(
            self.approach != "replay" or self.replay_per_task > 0,
            "approach 'replay' needs config.method.replay_per_task > 0 (buffer per task)",
        )
        require(0 < self.top_m <= self.pool_size, "config.method: need 0 < top_m <= pool_size")
