"""The server's half of one federated round, shared by the in-process runner and the Flower app.

Both engines (jaxlvlm.runners.federated simulates every client in one process; the Flower ServerApp
of jaxlvlm.federated.flower talks to separate processes) call ``server_step`` after the clients'
uploads arrive and ``resume_rounds`` when they start, so the aggregation, the update check and the
resume rule exist once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxlvlm.methods.pilot.server import CollectedUpdates, collect_updates
from jaxlvlm.train.checkpoint import RoundCheckpoints

PyTree = Any


def server_step(
    approach,
    state: PyTree,
    stage: str,
    names: Sequence[str],
    payload: PyTree,
    uploads: Sequence[PyTree | None],
    client_states: PyTree,
    absent: dict[str, str] | None = None,
) -> tuple[PyTree, CollectedUpdates, int, list[list[float]] | None]:
    """Checks the uploads, aggregates them: (next server state, what was collected, bytes down,
    the aggregation weights the approach applied as a [K][K] list, row k = what client k got from
    each client's upload, or None when the approach aggregates nothing).

    names [K]; payload: what the server sent (leaves [K, ...]); uploads [K] pytrees, None for a
    client that sent nothing; absent: {client: why it sent nothing}. A bad or missing upload is
    replaced by the client's previous parameters and marked invalid (the round goes on without
    it); every such client is listed in ``collected.rejected`` with the reason, in client order.
    """
    absent = dict(absent or {})
    previous = approach.previous(state, payload, stage)
    for name, upload in zip(names, uploads, strict=True):
        if upload is None and name not in absent:
            absent[name] = f"client '{name}' sent no update"
    filled = [p if u is None else u for u, p in zip(uploads, previous, strict=True)]
    got = collect_updates(names, filled, previous)
    reasons = dict(got.rejected) | absent
    valid = np.asarray([n not in reasons for n in names], bool)
    got = CollectedUpdates(
        stacked=got.stacked, valid=valid, rejected=[(n, reasons[n]) for n in names if n in reasons]
    )
    state, down, weights = approach.aggregate(state, got, client_states, stage)
    if weights is not None:
        weights = np.asarray(weights, np.float64).round(6).tolist()  # JSON for the round log
    return state, got, down, weights


def resume_rounds(ckpt: RoundCheckpoints, approach):
    """(state, rounds log, wall seconds so far, rounds done) from the newest restorable checkpoint."""

    def restore(done: int):
        meta = ckpt.read_meta(done)
        if [tuple(e) for e in meta["schedule"]] != [tuple(e) for e in approach.schedule]:
            raise ValueError(
                f"{ckpt.directory}/{done}: saved round schedule {meta['schedule']} differs "
                f"from this run's {approach.schedule}; use a new --workdir"
            )
        stage_done = approach.schedule[done - 1][1]
        return meta, ckpt.restore(done, approach.template(stage_done))

    found = ckpt.restore_newest(restore)
    if found is None:
        return approach.initial, [], 0.0, 0
    done, (meta, state) = found
    logging.info(
        "federated: resuming after round %d of %d (%s)",
        done,
        len(approach.schedule),
        ckpt.directory,
    )
    return state, list(meta["rounds_log"]), float(meta["wall_s"]), done
