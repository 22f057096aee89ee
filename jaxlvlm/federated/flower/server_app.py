"""The ServerApp: Flower calls ``main`` once per run with the grid of connected SuperNodes."""

from __future__ import annotations

import logging

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from jaxlvlm.federated.flower.server import serve

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    logging.getLogger().setLevel(logging.INFO)
    for chatty in ("httpx", "absl"):  # a line per HTTP poll / per orbax step otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    summary = serve(grid, dict(context.run_config))
    logging.info("federation finished: macro score %.2f", summary["macro"])
