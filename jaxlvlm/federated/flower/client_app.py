"""The ClientApp: what a SuperNode runs for each message of the ServerApp.

Flower starts one ClientApp process per message; this one only forwards the message to the node's
warm site process (worker.py, started on the node's first message by link.py) and returns its
answer (handlers.py says what a site answers and which node config keys it reads). It imports
neither jax nor the model code, so a message costs a process start, not a site build.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from jaxlvlm.federated.flower.link import ask

app = ClientApp()


def _forward(kind: str, msg: Message, context: Context) -> Message:
    return Message(ask(kind, msg.content, dict(context.node_config)), reply_to=msg)


@app.query()
def query(msg: Message, context: Context) -> Message:
    return _forward("query", msg, context)


@app.train()
def train(msg: Message, context: Context) -> Message:
    return _forward("train", msg, context)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return _forward("evaluate", msg, context)
