"""The warm site process: one long-lived process per SuperNode that holds the site.

Flower starts a fresh ClientApp process for every message. Building the site there each time
(importing jax and transformers, reading the data, loading the backbone, loading or compiling the
client program) cost about 30 s per message on the 2-core CPU with the tiny model, and would reload
a 7B backbone every round. Instead the ClientApp (client_app.py, which imports neither jax nor
jaxlvlm's model code) forwards each message to this process over a Unix socket (link.py starts it
on the node's first message), and this process answers with handlers.answer: the site, its data,
its backbone and its compiled programs stay in memory between rounds.

It serves one site identity (link.site_identity) for one SuperNode and exits within a second of that
SuperNode's end, so a killed SuperNode takes its site process with it and a restarted one starts a
fresh process. Its log is <site workdir>/site_process.log.

    python -m jaxlvlm.federated.flower.worker --socket PATH --watch_pid PID --node_config JSON
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import time
import traceback
from multiprocessing.connection import Listener

import psutil
from flwr.app import RecordDict

from jaxlvlm.federated.flower import handlers, wire
from jaxlvlm.federated.flower.link import site_identity

WATCH_S = 0.5


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _exit_with(pid: int, socket_path: str) -> None:
    """Ends this process (mid-computation too) once process ``pid`` is gone."""
    while _alive(pid):
        time.sleep(WATCH_S)
    logging.info("SuperNode %d is gone; the site process ends", pid)
    for leftover in (socket_path, socket_path + ".lock"):
        with contextlib.suppress(OSError):
            os.unlink(leftover)
    os._exit(0)  # no clean-up: a killed SuperNode's site must not finish its round either


def serve_one(frame: bytes, identity: dict) -> bytes:
    """The reply frame to one request frame (an error is answered, never raised)."""
    try:
        envelope, content = wire.unpack(frame)
        theirs = site_identity(envelope["node_config"])
        if theirs != identity:
            raise ValueError(
                f"this site process serves {identity}, the message came for {theirs}; "
                "a SuperNode's node config changed under a running site process"
            )
        reply = handlers.answer(envelope["kind"], content, envelope["node_config"])
        return wire.pack(reply, {"ok": True})
    except Exception as e:  # reported to the ClientApp, which fails the message with it
        logging.error("%s", traceback.format_exc())
        return wire.pack(RecordDict(), {"error": f"{type(e).__name__}: {e}"})


def serve(socket_path: str, watch_pid: int, node_config: dict) -> None:
    """Builds the site, then answers requests on ``socket_path`` until ``watch_pid`` ends."""
    threading.Thread(target=_exit_with, args=(watch_pid, socket_path), daemon=True).start()
    identity = site_identity(node_config)
    t0 = time.perf_counter()
    handlers.site_for(node_config)  # before listening: the ClientApp waits for a ready site
    logging.info("site built in %.1f s; listening on %s", time.perf_counter() - t0, socket_path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)  # a stale socket of a process that was killed
    with Listener(socket_path, family="AF_UNIX") as listener:
        while True:
            with listener.accept() as conn:
                try:
                    frame = conn.recv_bytes()
                except (EOFError, OSError):
                    continue  # the ClientApp went away before asking
                t = time.perf_counter()
                reply = serve_one(frame, identity)
                try:
                    conn.send_bytes(reply)
                except OSError as e:
                    logging.warning("the ClientApp left before the reply: %s", e)
                logging.info("answered in %.1f s", time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--socket", required=True, help="Unix socket path to listen on")
    p.add_argument("--watch_pid", type=int, required=True, help="the SuperNode's process id")
    p.add_argument("--node_config", required=True, help="the SuperNode's node config, as JSON")
    a = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    for chatty in ("absl",):  # several lines per orbax save otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    serve(a.socket, a.watch_pid, json.loads(a.node_config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
