"""Pilot and FedAvg on Flower across processes: a SuperLink and two SuperNodes on 127.0.0.1.

The results must equal the in-process runner's bitwise (same seed, same data, the same jitted
client program on each site's own batches), for Pilot and for FedAvg, both in the default suite. Each
site's warm process (jaxlvlm.federated.flower.worker) holds its site between messages, and every
process loads what the reference run compiled from the shared compilation cache. Slow: a site that
sends NaN is rejected and named while the round goes on, and a site killed during round 2 is left
out of that round, named, and back in round 3 after a restart.
"""

import numpy as np
import psutil
import pytest

pytest.importorskip("flwr")

from flower_fixtures import (  # noqa: E402
    OVERRIDES,
    SITES,
    THREE_ROUNDS,
    assert_bitwise,
    busy,
    completed,
    federation,
    flat,
    restore,
    site,
    site_state,
    spec,
    submit,
    summary,
    wait_until,
)

from jaxlvlm.federated.flower import protocol as P  # noqa: E402
from jaxlvlm.runners import federated as F  # noqa: E402


def test_flower_equals_the_in_process_runner_for_pilot_and_fedavg(tmp_path, shared_cache):
    # One test, so the two federations run one after the other: as two parametrised cases,
    # pytest -n 2 may run them side by side, and one federation with its reference run peaks at
    # about 6.3 GB of resident memory here (seven processes), which a small CI machine cannot
    # hold twice next to the other worker's tests.
    for approach in ("pilot", "fedavg"):
        _check_parity(approach, tmp_path / approach, shared_cache)


def _check_parity(approach: str, tmp_path, shared_cache) -> None:
    s = spec(approach)  # Pilot: round 1 stage 1 + stage 2, round 2 stage 2
    # The reference first: the Flower processes then load its compiled programs.
    want = F.run_federated(P.load_config(s, OVERRIDES), str(tmp_path / "ref"))["summary"]
    fed = federation(tmp_path, s, shared_cache)
    try:
        run = submit(fed, s, tmp_path / "server", shared_cache)
        completed(fed, run, tmp_path)
    finally:
        fed.stop()
    got = summary(fed, tmp_path / "server", s)
    assert [x["score"] for x in got["clients"]] == [x["score"] for x in want["clients"]]
    assert [r["stage"] for r in got["rounds"]] == [r["stage"] for r in want["rounds"]]
    assert all(r["rejected"] == [] and r["left_out"] == [] for r in got["rounds"])
    server, ref = restore(str(tmp_path / "server")), restore(str(tmp_path / "ref"))
    keys = ("task_avgs", "lora") if approach == "pilot" else ("payload",)
    for k in keys:
        assert_bitwise(server[k], ref[k], f"{approach} server state {k}")
    if approach == "pilot":  # what each site kept (never sent) equals the simulated client's
        for k, name in enumerate(SITES):
            kept = site_state(tmp_path, name)
            slot = {n: np.asarray(v)[k] for n, v in flat(ref["client_state"]).items()}
            assert flat(kept).keys() == slot.keys()
            for n, v in flat(kept).items():
                np.testing.assert_array_equal(v, slot[n], err_msg=f"{name} {n}")


@pytest.mark.slow
def test_a_nan_update_is_rejected_and_a_killed_site_rejoins_after_a_restart(tmp_path, shared_cache):
    s = spec("fedavg", 3)
    nan_site, killed = SITES
    extra = dict(overrides=THREE_ROUNDS)
    fed = federation(
        tmp_path, s, shared_cache, **{nan_site: dict(extra, nan_round=1), killed: extra}
    )
    try:
        run = submit(fed, s, tmp_path / "server", shared_cache, THREE_ROUNDS, round_timeout=90.0)
        first = tmp_path / "server" / "rounds" / "1"
        node = psutil.Process(fed.procs[f"supernode_{killed}"].pid)
        # round 1 saved and the site busy with round 2
        wait_until(lambda: first.exists() and busy(node), run)
        fed.kill(f"supernode_{killed}")
        fed.start_supernode(killed, **site(tmp_path, killed, s, shared_cache, **extra))
        completed(fed, run, tmp_path)
    finally:
        fed.stop()
    got = summary(fed, tmp_path / "server", s, THREE_ROUNDS)
    r1, r2, r3 = got["rounds"]
    assert [x["client"] for x in r1["rejected"]] == [nan_site]
    assert "non-finite" in r1["rejected"][0]["reason"]
    assert r1["left_out"] == [] and r1["local_steps"] > 0  # the round went on without it
    assert r2["left_out"] == [killed] and [x["client"] for x in r2["rejected"]] == [killed]
    assert killed in r2["rejected"][0]["reason"]  # Flower's 'Node Unavailable' or the timeout
    assert r3["rejected"] == [] and r3["left_out"] == []
    assert all(np.isfinite(c["score"]) for c in got["clients"])
    # the killed SuperNode's warm site process ended with it (the restarted node got a new one)
    log = (tmp_path / "sites" / killed.replace("#", "_") / "site_process.log").read_text()
    assert f"SuperNode {node.pid} is gone" in log
