"""The FAB's ClientApp: jaxlvlm.federated.flower.client_app (a module of its own, so a ClientApp
process imports neither jax nor the server's code)."""

from jaxlvlm.federated.flower.client_app import app

__all__ = ["app"]
