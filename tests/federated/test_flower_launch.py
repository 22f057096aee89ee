"""The local launcher reads a run's end from the SuperLink, not from ``flwr run``'s exit status.

``flwr run --stream`` exits 0 when its log stream ends, whether the ServerApp returned or raised;
a run whose ServerApp raised must come back as failed, with the ServerApp's error.
"""

import pytest

pytest.importorskip("flwr")

from flower_fixtures import OVERRIDES, spec, submit  # noqa: E402

from jaxlvlm.federated.flower.launch import COMPLETED, LocalFederation  # noqa: E402


def test_a_serverapp_that_raises_is_reported_failed_with_its_error(tmp_path):
    fed = LocalFederation(str(tmp_path / "fed"))
    try:
        fed.start_superlink()
        # The Flower app refuses per-round evaluation before it waits for any site.
        bad = f"{OVERRIDES} method.round_eval_num=4"
        run = submit(fed, spec("fedavg"), tmp_path / "server", str(tmp_path / "jc"), bad)
        got = fed.outcome(run, timeout=300)
    finally:
        fed.stop()
    assert run.returncode == 0  # what the launcher must not trust
    assert got["status"] != COMPLETED and got["status"].startswith("finished"), got
    assert "round_eval_num=4" in got["details"], got
    assert "round_eval_num=4" in fed.log_tails()
