"""The ClientApp's side of the warm site process (worker.py): find it, start it, ask it.

The site process of a SuperNode listens on a Unix socket in a directory only this user can enter
(<tmp>/jaxlvlm-<uid>), named by a hash of the SuperNode's process id and the site's identity, so a
restarted SuperNode, or one with another node config, gets a process of its own. The first message
of a node starts it, detached (its own session, so Flower's clean-up of a finished ClientApp does
not end it); it ends itself when the SuperNode ends. Nothing here imports jax.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Client, Connection

import psutil
from flwr.app import RecordDict

from jaxlvlm.federated.flower import wire

# Building a site loads its data and backbone: minutes for a large model on a slow disk.
START_TIMEOUT_S = 1800.0
LOG_NAME = "site_process.log"
IDENTITY = ("config", "client", "workdir", "overrides", "jax_cache")


def site_identity(node_config: dict) -> dict[str, str]:
    """The node config keys that make a site what it is, with their defaults filled in."""
    missing = [k for k in ("config", "workdir") if k not in node_config]
    if missing:
        raise ValueError(
            f"SuperNode node config lacks {missing}; start it with --node-config "
            '\'config="file.py:arg" workdir="dir" client="name"\''
        )
    workdir = os.path.abspath(str(node_config["workdir"]))
    cache = str(node_config.get("jax_cache", os.path.join(workdir, "jax_cache")))
    return {
        "config": str(node_config["config"]),
        "client": str(node_config.get("client", "")),
        "workdir": workdir,
        "overrides": str(node_config.get("overrides", "")),
        "jax_cache": os.path.abspath(cache),
    }


def supernode_pid() -> int:
    """The process id of the SuperNode this ClientApp runs under (its nearest ancestor
    'flower-supernode'; the parent when there is none, as with --isolation process)."""
    me = psutil.Process()
    for p in me.parents():
        with contextlib.suppress(psutil.Error):
            if any("flower-supernode" in part for part in p.cmdline()):
                return p.pid
    return me.ppid()


def socket_dir() -> str:
    """<tmp>/jaxlvlm-<uid>, created 0700; refused when another user could enter it."""
    path = os.path.join(tempfile.gettempdir(), f"jaxlvlm-{os.getuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionError(
            f"{path} must belong to this user with mode 0700 (it holds the site processes' "
            "sockets); remove it or fix its owner and mode"
        )
    return path


def socket_path(pid: int, identity: dict) -> str:
    key = json.dumps({"supernode": pid, **identity}, sort_keys=True).encode()
    return os.path.join(socket_dir(), f"site-{hashlib.sha256(key).hexdigest()[:20]}.sock")


def _connect(path: str) -> Connection | None:
    try:
        return Client(path, family="AF_UNIX")
    except (FileNotFoundError, ConnectionRefusedError):
        return None


def _log_tail(path: str, chars: int = 3000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-chars:]
    except OSError:
        return "(no log)"


def _start(path: str, pid: int, node_config: dict, identity: dict) -> Connection:
    """Starts the site process and waits until it listens."""
    os.makedirs(identity["workdir"], exist_ok=True)
    log_path = os.path.join(identity["workdir"], LOG_NAME)
    cmd = [sys.executable, "-m", "jaxlvlm.federated.flower.worker", "--socket", path]
    cmd += ["--watch_pid", str(pid), "--node_config", json.dumps(node_config)]
    with open(log_path, "a") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while (conn := _connect(path)) is None:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the site process of {identity['workdir']} exited with status "
                f"{proc.returncode} while building the site; its log ({log_path}) ends:\n"
                + _log_tail(log_path)
            )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the site process of {identity['workdir']} did not listen within "
                f"{START_TIMEOUT_S:g} s; see {log_path}"
            )
        time.sleep(0.1)
    return conn


def ask(kind: str, content: RecordDict, node_config: dict) -> RecordDict:
    """The site's reply content to a ``kind`` message, from this SuperNode's site process."""
    node_config = {
        k: v if isinstance(v, int | float | bool) else str(v) for k, v in node_config.items()
    }
    identity = site_identity(node_config)
    pid = supernode_pid()
    path = socket_path(pid, identity)
    with open(path + ".lock", "w") as lock:  # one start even if two messages race
        fcntl.flock(lock, fcntl.LOCK_EX)
        conn = _connect(path) or _start(path, pid, node_config, identity)
    with conn:
        conn.send_bytes(wire.pack(content, {"kind": kind, "node_config": node_config}))
        try:
            envelope, reply = wire.unpack(conn.recv_bytes())
        except EOFError as e:
            raise RuntimeError(
                f"the site process of {identity['workdir']} ended during a {kind} message; see "
                f"{os.path.join(identity['workdir'], LOG_NAME)}"
            ) from e
    if "error" in envelope:
        raise RuntimeError(f"site {identity['client'] or identity['workdir']}: {envelope['error']}")
    return reply
