"""Federated runner: client partitions, batch stacking; the end-to-end scenario (slow) with the
rejection drill, Pilot and FedAvg."""

import dataclasses

import numpy as np
import pytest

from jaxlvlm.methods.pilot.clients import make_clients
from jaxlvlm.methods.pilot.settings import FederatedSettings
from jaxlvlm.methods.settings import settings_from
from jaxlvlm.runners import federated as F


def _config(arg="test"):
    from configs.federated_builtin import get_config

    return get_config(arg)


def test_method_settings_reject_unknown_keys_and_values():
    c = _config()
    with c.unlocked():
        c.method.colour = "red"
    with pytest.raises(ValueError, match="colour"):
        settings_from(FederatedSettings, c.method)
    c = _config()
    c.method.backend = "threads"
    with pytest.raises(ValueError, match="backend"):
        settings_from(FederatedSettings, c.method)
    with pytest.raises(ValueError, match=r"config.method.rounds='three': expected int"):
        settings_from(FederatedSettings, {"rounds": "three"})  # a section typed by hand


@pytest.mark.parametrize("partition", ["iid", "dirichlet"])
def test_clients_cover_each_task_exactly_once(partition):
    c = _config()
    m = dataclasses.replace(settings_from(FederatedSettings, c.method), partition=partition)
    tasks = list(c.data.tasks)
    clients = make_clients(c, m, tasks, image_size=16)
    assert len(clients) == 2 * len(tasks)
    assert [cl.name for cl in clients[:2]] == ["digits_palette#0", "digits_palette#1"]
    for t, task in enumerate(tasks):
        mine = [cl for cl in clients if cl.task == task]
        assert all(cl.task_id == t for cl in mine)
        idx = np.concatenate([cl.source.source.indices for cl in mine])
        assert sorted(idx.tolist()) == list(range(16))  # a partition of the task's 16 samples


@pytest.mark.slow
@pytest.mark.parametrize("approach", ["pilot", "fedavg"])
def test_federated_scenario_end_to_end_with_rejection_drill(tmp_path, approach):
    c = _config(f"test,approach={approach},fault=digits_palette#1,rounds=2")
    s = F.run_federated(c, str(tmp_path))["summary"]
    assert len(s["clients"]) == 8 and set(s["per_task"]) == set(c.data.tasks)
    assert np.isfinite(s["macro"])
    first = s["rounds"][0]
    assert [r["client"] for r in first["rejected"]] == ["digits_palette#1"]
    assert "non-finite" in first["rejected"][0]["reason"]
    assert all(not r["rejected"] for r in s["rounds"][1:])
    stages = [r["stage"] for r in s["rounds"]]
    assert stages == (["stage1", "stage2", "stage2"] if approach == "pilot" else ["baseline"] * 2)
    assert all(r["bytes_up"] > 0 for r in s["rounds"])
