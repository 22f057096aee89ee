"""A Flower server that dies after a round resumes from its last round checkpoint.

The whole server side (SuperLink, ServerApp, ``flwr run``) is killed once round 1 is checkpointed,
while the sites may be training the next entry; the SuperLink restarts on the same address and
database (the SuperNodes stay up and reconnect), the run is submitted again, and the server goes on
after the saved entry. It must end in the state of an uninterrupted run: the in-process runner's,
which the parity test (test_flower_federation.py) shows an uninterrupted Flower run equals bitwise.
"""

import numpy as np
import pytest

pytest.importorskip("flwr")

from flower_fixtures import (  # noqa: E402
    OVERRIDES,
    SITES,
    assert_bitwise,
    completed,
    federation,
    flat,
    restore,
    site_state,
    spec,
    submit,
    summary,
    wait_until,
)

from jaxlvlm.federated.flower import protocol as P  # noqa: E402
from jaxlvlm.federated.run_parts import SUMMARY_FILE  # noqa: E402
from jaxlvlm.runners import federated as F  # noqa: E402


@pytest.mark.slow
def test_a_killed_server_resumes_after_its_last_round_and_ends_like_an_uninterrupted_run(
    tmp_path, shared_cache
):
    s = spec("pilot")  # entries: round 1 stage 1, round 1 stage 2, round 2 stage 2
    want = F.run_federated(P.load_config(s, OVERRIDES), str(tmp_path / "ref"))["summary"]
    server = tmp_path / "server"
    fed = federation(tmp_path, s, shared_cache)
    try:
        run = submit(fed, s, server, shared_cache)
        wait_until(lambda: (server / "rounds" / "1").exists(), run)
        fed.kill(next(n for n in fed.procs if n.startswith("run_")))
        fed.kill("superlink")  # and the ServerApp it started
        assert not (server / SUMMARY_FILE).exists()
        fed.start_superlink()  # same port, same database: the SuperNodes come back
        run = submit(fed, s, server, shared_cache)
        completed(fed, run, tmp_path)
    finally:
        fed.stop()
    got = summary(fed, server, s)
    assert got["resumed_after_round"] >= 1  # entries restored from server/rounds, not rerun
    assert [r["stage"] for r in got["rounds"]] == [r["stage"] for r in want["rounds"]]
    assert all(r["rejected"] == [] and r["left_out"] == [] for r in got["rounds"])
    assert [x["score"] for x in got["clients"]] == [x["score"] for x in want["clients"]]
    ref = restore(str(tmp_path / "ref"))
    state = restore(str(server))
    for k in ("task_avgs", "lora"):
        assert_bitwise(state[k], ref[k], f"resumed server state {k}")
    for k, name in enumerate(SITES):  # the sites' kept state: each entry's once, in order
        slot = {n: np.asarray(v)[k] for n, v in flat(ref["client_state"]).items()}
        kept = flat(site_state(tmp_path, name))
        assert kept.keys() == slot.keys()
        for n, v in kept.items():
            np.testing.assert_array_equal(v, slot[n], err_msg=f"{name} {n}")
