"""Pilot and FedAvg on Flower across processes: a SuperLink and two SuperNodes on 127.0.0.1.

Slow (each Flower message starts a ClientApp process that imports jax and builds the site; about
3 minutes per federation on the 2-core CPU): the results must equal the in-process runner's
bitwise (same seed, same data, the same jitted client program on each site's own batches), a
site that sends NaN is rejected and named, and a site killed during round 2 is left out of that
round, named, and back in round 3 after a restart.
"""

import contextlib
import os
import time

import numpy as np
import orbax.checkpoint as ocp
import psutil
import pytest

pytest.importorskip("flwr")

from jaxlvlm.federated.flower import protocol as P  # noqa: E402
from jaxlvlm.federated.flower.launch import LocalFederation  # noqa: E402
from jaxlvlm.runners import federated as F  # noqa: E402
from jaxlvlm.train.checkpoint import RoundCheckpoints  # noqa: E402

CONFIG = os.path.abspath("configs/federated_builtin.py")
OVERRIDES = (
    'data.tasks=["digits_palette","digit_pair"] method.clients_per_task=1 method.base_steps=0'
)
SITES = ["digits_palette#0", "digit_pair#0"]


def _spec(approach: str, rounds: int = 2) -> str:
    return f"{CONFIG}:test,approach={approach},rounds={rounds}"


def _federation(tmp, spec: str, **node_extra) -> LocalFederation:
    """A SuperLink and the two sites' SuperNodes; each site's own config is ``spec``."""
    fed = LocalFederation(str(tmp / "fed"))
    fed.start_superlink()
    for name in SITES:
        fed.start_supernode(name, **_site(tmp, name, spec, **node_extra.get(name, {})))
    return fed


def _site(tmp, name, spec, **extra) -> dict:
    d = str(tmp / "sites" / name.replace("#", "_"))
    return dict(config=spec, client=name, workdir=d, overrides=OVERRIDES) | extra


# the 'test' config caps rounds at 2; the kill test needs a third round to see the site rejoin
THREE_ROUNDS = f"{OVERRIDES} method.rounds=3"


def _run(fed, tmp, spec: str, workdir: str, round_timeout: float = 600.0) -> dict:
    run = fed.submit(
        dict(
            config=spec,
            workdir=str(tmp / workdir),
            num_sites=2,
            round_timeout=round_timeout,
            join_timeout=300.0,
            overrides=OVERRIDES,
        )
    )
    assert run.wait(1500) == 0, open(os.path.join(fed.logs, "superlink.log")).read()[-3000:]
    summary = F.read_summary(str(tmp / workdir), _finished(spec))
    assert summary is not None, f"no summary in {tmp / workdir}; logs in {fed.logs}"
    return summary


def _finished(spec, overrides=OVERRIDES):
    c = P.load_config(spec, overrides)
    return F.run_fingerprint(c, P.settings(c), evaluation=True)


def _restore(directory: str) -> dict:
    ck = RoundCheckpoints(directory, {}, keep=2)
    try:
        args = ocp.args.Composite(state=ocp.args.StandardRestore())
        return ck.manager.restore(ck.latest_step(), args=args)["state"]
    finally:
        ck.close()


def _flat(tree) -> dict:
    import jax

    return {
        jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)
    }


def _assert_bitwise(a, b, what):
    fa, fb = _flat(a), _flat(b)
    assert fa.keys() == fb.keys(), what
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=f"{what} {k}")


def _busy(node: psutil.Process) -> bool:
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


def _site_state(tmp, name) -> dict:
    root = tmp / "sites" / name.replace("#", "_")
    (fed_dir,) = [d for d in os.listdir(root) if d.startswith("federation_")]
    return _restore(str(root / fed_dir / "site"))


@pytest.mark.slow
def test_flower_equals_the_in_process_runner_for_pilot_and_fedavg(tmp_path):
    for approach in ("pilot", "fedavg"):
        spec = _spec(approach)  # Pilot: round 1 stage 1 + stage 2, round 2 stage 2
        fed = _federation(tmp_path / approach, spec)
        try:
            got = _run(fed, tmp_path, spec, f"server_{approach}")
        finally:
            fed.stop()
        c = P.load_config(spec, OVERRIDES)
        want = F.run_federated(c, str(tmp_path / f"ref_{approach}"))["summary"]
        assert [x["score"] for x in got["clients"]] == [x["score"] for x in want["clients"]]
        assert [r["stage"] for r in got["rounds"]] == [r["stage"] for r in want["rounds"]]
        server = _restore(str(tmp_path / f"server_{approach}"))
        ref = _restore(str(tmp_path / f"ref_{approach}"))
        keys = ("task_avgs", "lora") if approach == "pilot" else ("payload",)
        for k in keys:
            _assert_bitwise(server[k], ref[k], f"{approach} server state {k}")
        if approach == "pilot":  # what each site kept (never sent) equals the simulated client's
            for k, name in enumerate(SITES):
                kept = _site_state(tmp_path / approach, name)
                slot = {n: np.asarray(v)[k] for n, v in _flat(ref["client_state"]).items()}
                assert _flat(kept).keys() == slot.keys()
                for n, v in _flat(kept).items():
                    np.testing.assert_array_equal(v, slot[n], err_msg=f"{name} {n}")


@pytest.mark.slow
def test_a_nan_update_is_rejected_and_a_killed_site_rejoins_after_a_restart(tmp_path):
    spec = _spec("fedavg", 3)
    nan_site, killed = SITES
    extra = dict(overrides=THREE_ROUNDS)
    fed = _federation(tmp_path, spec, **{nan_site: dict(extra, nan_round=1), killed: extra})
    try:
        run = fed.submit(
            dict(
                config=spec,
                workdir=str(tmp_path / "server"),
                num_sites=2,
                round_timeout=90.0,
                join_timeout=300.0,
                overrides=THREE_ROUNDS,
            )
        )
        first = tmp_path / "server" / "rounds" / "1"
        node = psutil.Process(fed.procs[f"supernode_{killed}"].pid)
        for _ in range(6000):  # round 1 saved and the site's ClientApp busy with round 2
            if run.poll() is not None:
                break
            if first.exists() and _busy(node):
                break
            time.sleep(0.2)
        fed.kill(f"supernode_{killed}")
        fed.start_supernode(killed, **_site(tmp_path, killed, spec, **extra))  # a new node id
        assert run.wait(1500) == 0
    finally:
        fed.stop()
    s = F.read_summary(str(tmp_path / "server"), _finished(spec, THREE_ROUNDS))
    r1, r2, r3 = s["rounds"]
    assert [x["client"] for x in r1["rejected"]] == [nan_site]
    assert "non-finite" in r1["rejected"][0]["reason"]
    assert r2["left_out"] == [killed] and [x["client"] for x in r2["rejected"]] == [killed]
    assert killed in r2["rejected"][0]["reason"]  # Flower's 'Node Unavailable' or the timeout
    assert r3["rejected"] == [] and r3["left_out"] == []
    assert all(np.isfinite(c["score"]) for c in s["clients"])
