"""Pilot (docs/methods.md section 4) as pure functions: connectors (registered), losses,
aggregation, client/server."""

from jaxlvlm.methods.pilot.aggregation import (
    adaptive_aggregate,
    ata_weights,
    fedavg,
    flatten_clients,
    task_average,
)
from jaxlvlm.methods.pilot.client import (
    ClientProgram,
    run_clients,
    run_clients_loop,
    run_clients_vmap,
)
from jaxlvlm.methods.pilot.losses import (
    difference_loss,
    difference_loss_direct,
    find_sown,
    load_balancing_loss,
    masked_image_mean,
    proximal_term,
    router_z_loss,
)
from jaxlvlm.methods.pilot.server import (
    CollectedUpdates,
    check_update,
    collect_updates,
    other_task_index,
    pilot_aggregate,
    round_schedule,
    stage2_connector_params,
)
from jaxlvlm.models.pilot_connectors import (
    DIFFERENCE_LOSS,
    ROUTER_LOGITS,
    STAGE1_TRAINABLE,
    STAGE2_TRAINABLE,
    PilotCTMoAConnector,
    PilotStage1Connector,
)

__all__ = [
    "DIFFERENCE_LOSS",
    "ROUTER_LOGITS",
    "STAGE1_TRAINABLE",
    "STAGE2_TRAINABLE",
    "ClientProgram",
    "CollectedUpdates",
    "PilotCTMoAConnector",
    "PilotStage1Connector",
    "adaptive_aggregate",
    "ata_weights",
    "check_update",
    "collect_updates",
    "difference_loss",
    "difference_loss_direct",
    "fedavg",
    "find_sown",
    "flatten_clients",
    "load_balancing_loss",
    "masked_image_mean",
    "other_task_index",
    "pilot_aggregate",
    "proximal_term",
    "round_schedule",
    "router_z_loss",
    "run_clients",
    "run_clients_loop",
    "run_clients_vmap",
    "stage2_connector_params",
    "task_average",
]
