"""config.method of mode 'federated': the approach, the clients, local training and Pilot's losses."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from jaxlvlm.methods.pilot.client import BACKENDS
from jaxlvlm.methods.settings import BaseModelSettings, choose, require

APPROACHES = ("pilot", "fedavg", "fedprox", "local", "centralized")


@dataclasses.dataclass(frozen=True)
class FederatedSettings(BaseModelSettings):
    """approach: pilot | fedavg | fedprox | local | centralized.
    clients_per_task; partition: 'iid' | 'dirichlet' (label skew, dirichlet_alpha).
    rounds, local_epochs; backend: 'vmap' | 'loop' (how the clients of a round run).
    lr_lora, lr_connector, weight_decay: local AdamW.
    lambda_diff, lambda_balance, lambda_z: Pilot's auxiliary losses; neighbours: ATA's M
    (0 = min(3, K - 1)); cross_hidden_dim: CT-MoA's adapter width.
    prox_mu: FedProx's mu. fault_drill_client: a client whose round-1 upload is corrupted (NaN).
    round_eval_num: after every schedule entry, score each client's personalised model on the
      first this many test samples of its task and record them in that entry's log (the
      per-round curves; 0 = off). 'centralized' has no rounds and ignores it.
    """

    MODE: ClassVar[str] = "federated"

    approach: str = "pilot"
    clients_per_task: int = 2
    partition: str = "iid"
    dirichlet_alpha: float = 0.5
    rounds: int = 3
    local_epochs: int = 1
    backend: str = "vmap"
    lr_lora: float = 2e-3
    lr_connector: float = 2e-4
    weight_decay: float = 0.0
    lambda_diff: float = 0.1
    lambda_balance: float = 0.01
    lambda_z: float = 0.001
    neighbours: int = 0
    prox_mu: float = 0.01
    cross_hidden_dim: int = 256
    evaluate_base: bool = False
    fault_drill_client: str = ""
    round_eval_num: int = 0

    def __post_init__(self):
        choose(self, "approach", self.approach, APPROACHES)
        choose(self, "backend", self.backend, tuple(BACKENDS))
        choose(self, "partition", self.partition, ("iid", "dirichlet"))
        require(
            self.round_eval_num >= 0,
            f"config.method.round_eval_num={self.round_eval_num}: use >= 0 (0 = off)",
        )
        self.check_base()
