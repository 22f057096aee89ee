"""The FAB's ServerApp: jaxlvlm.federated.flower.server_app."""

from jaxlvlm.federated.flower.server_app import app

__all__ = ["app"]
