"""A Google Cloud Storage API on loopback for tests: gcp-storage-emulator (in-memory) in a subprocess,
and the environment that points gcsfs (etils.epath's gs:// backend without TensorFlow) and
TensorStore (orbax's array writer) at it.

gcsfs: STORAGE_EMULATOR_HOST, an anonymous token and a project (fsspec reads FSSPEC_GCS_* when
it is imported, so the running process's fsspec config is updated too), and
GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false: gcsfs otherwise asks the gRPC Storage Control API for the
bucket type, which the emulator does not serve (each first access then waits 60 s for a timeout).
TensorStore: TENSORSTORE_GCS_HTTP_URL (it finds no credentials and goes on without them); the
emulator runs through emulator_server.py, which adds the generation header TensorStore's updates
need (see there).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emulator_env(url: str) -> dict[str, str]:
    """The environment variables that point gcsfs and TensorStore at the emulator at ``url``."""
    return {
        "STORAGE_EMULATOR_HOST": url,
        "TENSORSTORE_GCS_HTTP_URL": url,
        "FSSPEC_GCS_TOKEN": "anon",
        "FSSPEC_GCS_PROJECT": "test",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }


def apply_in_process(env: dict[str, str]) -> None:
    """Sets ``env`` in this process, fsspec's already-read config included."""
    import fsspec.config  # fsspec: read its config at import; update the live copy

    os.environ.update(env)
    fsspec.config.conf.setdefault("gcs", {}).update(token="anon", project="test")


def create_bucket(url: str, name: str) -> None:
    """Creates bucket ``name`` through the JSON API (bucket names need 3-63 characters)."""
    body = json.dumps({"name": name}).encode()
    req = urllib.request.Request(
        f"{url}/storage/v1/b?project=test",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200, r.read()


@contextlib.contextmanager
def running_emulator(timeout_s: float = 30.0) -> Iterator[str]:
    """Starts the in-memory emulator on a free loopback port; yields its URL; stops it on exit."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            os.path.join(os.path.dirname(os.path.abspath(__file__)), "emulator_server.py"),
            "start",
            "--host=127.0.0.1",
            f"--port={port}",
            "--in-memory",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/storage/v1/b?project=test", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.poll() is not None else ""
                    raise RuntimeError(f"the GCS emulator did not start on {url}: {err}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
