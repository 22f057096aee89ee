"""The FAB's components: the ServerApp and ClientApp of jaxlvlm.federated.flower."""

from jaxlvlm.federated.flower.client_app import app as client
from jaxlvlm.federated.flower.server_app import app as server

__all__ = ["client", "server"]
