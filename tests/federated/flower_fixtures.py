"""A two-site Flower federation on 127.0.0.1 for the tests, and what they read back from it.

Two sites (digits_palette#0 and digit_pair#0) of configs/federated_builtin.py:test, each with its
own SuperNode, site workdir and the test's shared compilation cache (conftest.shared_cache).
"""

from __future__ import annotations

import contextlib
import os
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import psutil

from jaxlvlm.federated.flower import protocol as P
from jaxlvlm.federated.flower.launch import COMPLETED, LocalFederation
from jaxlvlm.federated.run_parts import read_summary, run_fingerprint
from jaxlvlm.train.checkpoint import RoundCheckpoints

CONFIG = os.path.abspath("configs/federated_builtin.py")
OVERRIDES = (
    'data.tasks=["digits_palette","digit_pair"] method.clients_per_task=1 method.base_steps=0'
)
SITES = ["digits_palette#0", "digit_pair#0"]
# the 'test' config caps rounds at 2; the kill test needs a third round to see the site rejoin
THREE_ROUNDS = f"{OVERRIDES} method.rounds=3"


def spec(approach: str, rounds: int = 2) -> str:
    return f"{CONFIG}:test,approach={approach},rounds={rounds}"


def federation(tmp, spec: str, cache: str, **node_extra) -> LocalFederation:
    """A SuperLink and the two sites' SuperNodes; each site's own config is ``spec``."""
    fed = LocalFederation(str(tmp / "fed"))
    fed.start_superlink()
    for name in SITES:
        fed.start_supernode(name, **site(tmp, name, spec, cache, **node_extra.get(name, {})))
    return fed


def site(tmp, name, spec, cache, **extra) -> dict:
    d = str(tmp / "sites" / name.replace("#", "_"))
    return dict(config=spec, client=name, workdir=d, overrides=OVERRIDES, jax_cache=cache) | extra


def submit(fed, spec: str, workdir, cache: str, overrides: str = OVERRIDES, round_timeout=600.0):
    """``flwr run`` of the federation with the server in ``workdir``: the attached process."""
    return fed.submit(
        dict(
            config=spec,
            workdir=str(workdir),
            num_sites=2,
            round_timeout=round_timeout,
            join_timeout=300.0,
            overrides=overrides,
            jax_cache=cache,
        )
    )


def completed(fed: LocalFederation, run, tmp, timeout: float = 1500.0) -> None:
    """Waits for the run and fails, with every process's log tail, unless the SuperLink says its
    ServerApp completed (``flwr run`` itself exits 0 for a failed run as well)."""
    got = fed.outcome(run, timeout)
    assert got["status"] == COMPLETED, (
        f"run {got['run_id']}: {got['status']} ({got['details']})\n"
        + fed.log_tails(extra_dirs=(str(tmp / "sites"),))
    )


def finished(spec: str, overrides: str = OVERRIDES) -> dict:
    c = P.load_config(spec, overrides)
    return run_fingerprint(c, P.settings(c), evaluation=True)


def summary(fed, workdir, spec: str, overrides: str = OVERRIDES) -> dict:
    s = read_summary(str(workdir), finished(spec, overrides))
    assert s is not None, f"no summary in {workdir}\n" + fed.log_tails()
    return s


def restore(directory: str) -> dict:
    """The newest round checkpoint's state in ``directory``/rounds."""
    ck = RoundCheckpoints(directory, {}, keep=2)
    try:
        args = ocp.args.Composite(state=ocp.args.StandardRestore())
        return ck.manager.restore(ck.latest_step(), args=args)["state"]
    finally:
        ck.close()


def flat(tree) -> dict:
    return {
        jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)
    }


def assert_bitwise(a, b, what):
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys(), what
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=f"{what} {k}")


def site_state(tmp, name) -> dict:
    """What a site kept after its newest schedule entry."""
    root = tmp / "sites" / name.replace("#", "_")
    (fed_dir,) = [d for d in os.listdir(root) if d.startswith("federation_")]
    return restore(str(root / fed_dir / "site"))


def busy(node: psutil.Process) -> bool:
    """Whether the SuperNode runs a ClientApp process right now."""
    try:
        children = node.children(recursive=True)
    except psutil.Error:  # a finished ClientApp not yet reaped (zombie) in the tree
        return False
    for p in children:
        with contextlib.suppress(psutil.Error):
            if "flwr-clientapp" in " ".join(p.cmdline()):
                return True
    return False


def wait_until(done, run, timeout: float = 1200.0) -> None:
    """Polls ``done()`` until it holds; fails if the run ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not done():
        assert run.poll() is None, f"the run ended (status {run.returncode}) before the moment"
        assert time.monotonic() < deadline, f"no such moment within {timeout:g} s"
        time.sleep(0.2)
