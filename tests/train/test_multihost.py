"""Two processes on loopback (jax.distributed, gloo CPU collectives, 4 CPU devices each, own data
shard) train to the same params as one process with 8 devices."""

import os
import socket
import subprocess
import sys

import numpy as np

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multihost_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(out, nproc, pid, port):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS",)}
    return subprocess.Popen(
        [sys.executable, WORKER, str(out), str(nproc), str(pid), str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_processes_match_one_process(tmp_path):
    port = _free_port()
    procs = [_spawn(tmp_path, 2, i, port) for i in range(2)]
    single = _spawn(tmp_path, 1, 0, 0)
    outs = []
    for p in [*procs, single]:
        out, _ = p.communicate(timeout=900)
        outs.append(out)
        assert p.returncode == 0, out[-4000:]
    losses = [[line for line in o.splitlines() if line.startswith("loss")] for o in outs]
    assert losses[0] == losses[1] and len(losses[0]) == 3
    two = np.load(tmp_path / "params_2.npz")
    one = np.load(tmp_path / "params_1.npz")
    assert sorted(two.files) == sorted(one.files)
    for k in one.files:
        np.testing.assert_allclose(two[k], one[k], atol=1e-5, rtol=0, err_msg=k)
    np.testing.assert_allclose(
        [float(x.split()[1]) for x in losses[0]],
        [float(x.split()[1]) for x in losses[2]],
        atol=1e-5,
    )
