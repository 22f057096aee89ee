"""Federated resume: per-round checkpoints (empty client states, stage-dependent client trees), the
config fingerprint, and end-to-end interrupted runs (slow) that must equal an uninterrupted run
bitwise and restart right after the last saved round."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxlvlm.files import write_json_atomic
from jaxlvlm.methods.pilot.settings import FederatedSettings
from jaxlvlm.methods.settings import settings_from
from jaxlvlm.runners import federated as F
from jaxlvlm.train.checkpoint import RoundCheckpoints
from jaxlvlm.train.fingerprint import check_fingerprint


def _config(arg: str, rounds: int):
    from configs.federated_builtin import get_config

    c = get_config(arg)
    c.method.rounds = (
        rounds  # the 'test' shrink caps rounds at 2; Pilot needs 3 entries past stage 1
    )
    return c


def _fingerprint(c, evaluation=False):
    return F.run_fingerprint(c, settings_from(FederatedSettings, c.method), evaluation=evaluation)


# ----------------------------------------------------------------------------- fast unit tests


def test_round_checkpoint_keeps_empty_client_states_and_zero_size_leaves(tmp_path):
    state = {
        "payload": {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones((2,), jnp.int32)},
        "client_state": {},  # a baseline client keeps nothing
        "centroids": jnp.zeros((0, 4)),  # orbax refuses zero-size arrays
    }
    ck = RoundCheckpoints(str(tmp_path), {"seed": 0}, keep=2)
    try:
        for r in (1, 2, 3):
            ck.save(r, jax.tree_util.tree_map(lambda x, r=r: x * r, state), {"rounds_log": [r]})
    finally:
        ck.close()
    ck = RoundCheckpoints(str(tmp_path), {"seed": 0}, keep=2)
    try:
        assert ck.latest_step() == 3
        assert sorted(ck.manager.all_steps()) == [2, 3]  # the last two are kept
        assert ck.read_meta(3)["rounds_log"] == [3]
        got = ck.restore(3, state)
    finally:
        ck.close()
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(state)
    np.testing.assert_array_equal(got["payload"]["w"], 3 * np.arange(6.0).reshape(2, 3))
    assert got["payload"]["b"].dtype == jnp.int32
    assert not got["payload"]["w"].committed  # jit may place it next to the sharded backbone
    assert got["client_state"] == {} and got["centroids"].shape == (0, 4)


def test_resume_under_another_config_is_refused_naming_the_key(tmp_path):
    ck = RoundCheckpoints(str(tmp_path), {"method.lr_lora": 0.001, "seed": 0})
    try:
        ck.save(1, {"x": jnp.ones(2)}, {})
    finally:
        ck.close()
    ck = RoundCheckpoints(str(tmp_path), {"method.lr_lora": 0.002, "seed": 0})
    try:
        with pytest.raises(ValueError, match=r"method\.lr_lora was 0\.001, now 0\.002"):
            ck.read_meta(1)
    finally:
        ck.close()


def test_fingerprint_fills_method_defaults_and_separates_evaluation_keys():
    c = _config("test,approach=fedavg", 3)
    fp = _fingerprint(c)
    assert fp["method.approach"] == "fedavg" and fp["method.rounds"] == 3
    assert fp["method.prox_mu"] == FederatedSettings.prox_mu  # a default not in the config
    assert not any(k.startswith(("eval.", "data.eval_sources", "train.")) for k in fp)
    full = _fingerprint(c, evaluation=True)
    assert "data.eval_sources" in full and "eval.max_new_tokens" in full
    c2 = _config("test,approach=fedavg", 3)
    c2.eval.max_new_tokens = 3
    assert _fingerprint(c2) == fp  # evaluation does not change the rounds
    with pytest.raises(ValueError, match="eval.max_new_tokens"):
        check_fingerprint("summary.json", full, _fingerprint(c2, evaluation=True))


def test_finished_summary_is_read_back_or_refused(tmp_path):
    c = _config("test,approach=fedavg", 3)
    summary = {"approach": "fedavg", "config_fingerprint": _fingerprint(c, evaluation=True)}
    write_json_atomic(os.path.join(tmp_path, F.SUMMARY_FILE), summary)
    assert not os.path.exists(os.path.join(tmp_path, F.SUMMARY_FILE + ".tmp"))
    out = F.run_federated(c, str(tmp_path))  # nothing is trained: it is read back
    assert out["resumed_from"] == -1 and out["summary"] == summary
    c.method.lr_lora = 5e-3
    with pytest.raises(ValueError, match="method.lr_lora"):
        F.run_federated(c, str(tmp_path))


# ----------------------------------------------------------------------------- end to end


class Interrupted(RuntimeError):
    pass


_CLIENT_BATCHES = F.client_batches  # the real one, before any test patches it


def _count_rounds(monkeypatch, config, stop_after=None):
    """Patches client_batches (called once per round) to record the round index it is called for
    and to raise Interrupted once ``stop_after`` rounds ran in this process."""
    calls = []

    def wrapped(run, clients, epochs, seed):
        if stop_after is not None and len(calls) == stop_after:
            raise Interrupted(f"killed after {stop_after} rounds")
        calls.append((seed - config.seed) // 31)
        return _CLIENT_BATCHES(run, clients, epochs, seed)

    monkeypatch.setattr(F, "client_batches", wrapped)  # the round loop's own reference
    return calls


def _final_round_state(workdir):
    """(rounds done, state, meta) of the latest round checkpoint, read without a template."""
    manager = ocp.CheckpointManager(os.path.join(workdir, "rounds"), item_names=("state", "meta"))
    try:
        last = manager.latest_step()
        got = manager.restore(
            last,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()),
        )
    finally:
        manager.close()
    return last, got["state"], got["meta"]


def _assert_same_run(ref_dir, ref, out_dir, out):
    assert [c["score"] for c in out["summary"]["clients"]] == [
        c["score"] for c in ref["summary"]["clients"]
    ]
    strip = lambda log: [{k: v for k, v in r.items() if k != "seconds"} for r in log]
    assert strip(out["summary"]["rounds"]) == strip(ref["summary"]["rounds"])
    n_ref, s_ref, m_ref = _final_round_state(ref_dir)
    n_out, s_out, m_out = _final_round_state(out_dir)
    assert n_out == n_ref == len(ref["summary"]["rounds"])
    assert jax.tree_util.tree_structure(s_out) == jax.tree_util.tree_structure(s_ref)
    for a, b in zip(
        jax.tree_util.tree_leaves(s_ref), jax.tree_util.tree_leaves(s_out), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bitwise
    assert m_out["schedule"] == m_ref["schedule"]


@pytest.mark.slow
def test_pilot_resumes_across_the_stage_boundary_bitwise(tmp_path, monkeypatch):
    c = _config("test,approach=pilot,base_steps=0", 3)
    ref_dir, dir_ = str(tmp_path / "ref"), str(tmp_path / "run")
    calls = _count_rounds(monkeypatch, c)
    ref = F.run_federated(c, ref_dir)
    assert calls == [0, 1, 2, 3] and ref["resumed_from"] == 0  # stage1, then 3 x stage2

    calls = _count_rounds(monkeypatch, c, stop_after=1)  # killed after stage 1
    with pytest.raises(Interrupted):
        F.run_federated(c, dir_)
    calls = _count_rounds(monkeypatch, c, stop_after=2)  # restores stage-1 state, enters stage 2
    with pytest.raises(Interrupted):
        F.run_federated(c, dir_)
    assert calls == [1, 2]
    calls = _count_rounds(monkeypatch, c)  # restores a stage-2 state (cross adapters + router)
    out = F.run_federated(c, dir_)
    assert calls == [3] and out["resumed_from"] == 3
    assert out["summary"]["resumed_after_round"] == 3
    _assert_same_run(ref_dir, ref, dir_, out)

    calls = _count_rounds(monkeypatch, c)
    again = F.run_federated(c, dir_)  # finished: read back, nothing retrained
    assert calls == [] and again["resumed_from"] == -1
    assert again["summary"]["clients"] == out["summary"]["clients"]


@pytest.mark.slow
def test_fedavg_resumes_bitwise_and_refuses_another_config(tmp_path, monkeypatch):
    c = _config("test,approach=fedavg,base_steps=0", 3)
    ref_dir, dir_ = str(tmp_path / "ref"), str(tmp_path / "run")
    calls = _count_rounds(monkeypatch, c)
    ref = F.run_federated(c, ref_dir)
    assert calls == [0, 1, 2]

    _count_rounds(monkeypatch, c, stop_after=2)
    with pytest.raises(Interrupted):
        F.run_federated(c, dir_)
    other = _config("test,approach=fedavg,base_steps=0", 3)
    other.method.local_epochs = 2
    calls = _count_rounds(monkeypatch, other)
    with pytest.raises(ValueError, match="method.local_epochs was 3, now 2"):
        F.run_federated(other, dir_)
    assert calls == []
    calls = _count_rounds(monkeypatch, c)
    out = F.run_federated(c, dir_)
    assert calls == [2] and out["resumed_from"] == 2
    _assert_same_run(ref_dir, ref, dir_, out)
