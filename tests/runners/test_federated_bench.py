"""The federated benchmark's pieces (docs/benchmark.md, Pilot): the scenarios of
configs/federated_builtin.py, the per-round evaluation and the aggregation weights in each round's
log, and the federated cells' final per-sample scores for the paired bootstrap."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlvlm.errors import ConfigError
from jaxlvlm.federated.run_parts import round_eval_sources
from jaxlvlm.methods.pilot.aggregation import ata_weights, flatten_clients
from jaxlvlm.methods.pilot.clients import make_clients
from jaxlvlm.methods.pilot.server import pilot_aggregate
from jaxlvlm.methods.pilot.settings import FederatedSettings
from jaxlvlm.methods.settings import settings_from
from jaxlvlm.runners import federated as F
from jaxlvlm.train.checkpoint import RoundCheckpoints
from tools.method_bench.collect import final_scores


def _config(arg):
    from configs.federated_builtin import get_config

    return get_config(arg)


def test_scenarios_set_the_tasks_the_data_sizes_and_the_base_early_stop():
    from configs import federated_builtin as FB

    c = _config("scenario=multimodal,per_client=800,eval_num=300,round_eval_num=60")
    assert c.data.tasks == ("digits_palette", "digit_pair", "counting_noisy", "digits_noisy")
    assert {dict(s)["num"] for s in c.data.sources} == {1600}  # 2 clients x 800
    assert {dict(s)["num"] for s in c.data.eval_sources} == {300}
    # The samples do not depend on config.seed, so test samples pair up across seeds.
    assert {dict(s)["seed"] for s in (*c.data.sources, *c.data.eval_sources)} == {0}
    m = settings_from(FederatedSettings, c.method)
    assert (m.round_eval_num, m.base_eval_every, m.base_patience, m.base_steps) == (60, 100, 2, 800)
    clients = make_clients(c, m, list(c.data.tasks), image_size=16)
    assert [cl.num_examples for cl in clients] == [800] * 8
    # The default is the demo's mixed scenario with 200 samples per client.
    d = _config("")
    assert d.data.tasks[-1] == "arithmetic" and {dict(s)["num"] for s in d.data.sources} == {400}
    assert _config("scenario=mixed").data.tasks == d.data.tasks
    with pytest.raises(ValueError, match=r"scenario='text'.*\['mixed', 'multimodal'\]"):
        _config("scenario=text")
    with pytest.raises(ValueError, match="round_eval_num=-1"):
        _config("round_eval_num=-1")
    # No client task is a (family, domain) pair the base trained on.
    for name in FB.SCENARIOS:
        assert not {(f, d) for f, d, _ in FB.scenario_tasks(name)} & set(FB.BASE)
    FB.SCENARIOS["leaky"] = [("digits", "plain", "digits"), ("counting", "noisy", "cn")]
    try:
        with pytest.raises(ValueError, match=r"tasks \['digits'\] are base"):
            FB.scenario_tasks("leaky")
    finally:
        del FB.SCENARIOS["leaky"]


def test_round_evaluation_takes_the_first_test_samples_of_builtin_sources_only():
    c = _config("test,eval_num=4")
    got = round_eval_sources(c, "digit_pair", 2)
    assert [s["num"] for s in got] == [2]
    assert {k: v for k, v in got[0].items() if k != "num"} == {
        k: v for k, v in dict(c.data.eval_sources[1]).items() if k != "num"
    }
    with c.unlocked():
        c.data.eval_sources = (dict(type="tfds", data_dir="/d", name="x", split="test", task="a"),)
    with pytest.raises(ConfigError, match="round_eval_num=2: task 'a' has a 'tfds'"):
        round_eval_sources(c, "a", 2)
    with pytest.raises(ValueError, match="round_eval_num=-3"):
        settings_from(FederatedSettings, {"round_eval_num": -3})


def _check_round_log(config, summary, workdir, entries):
    rounds = summary["rounds"]
    names = [cl["name"] for cl in summary["clients"]]
    assert [(r["round"], r["stage"]) for r in rounds] == entries
    for r in rounds:
        assert list(r["eval"]) == names and r["eval_samples"] == 4
        w = np.asarray(r["aggregation_weights"])
        assert w.shape == (8, 8)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    # The last entry scored every client's final model on the same (all 4) test samples.
    assert list(rounds[-1]["eval"].values()) == [cl["score"] for cl in summary["clients"]]
    # The log is in the round checkpoint's meta: a resumed run keeps the curve.
    fp = F.run_fingerprint(config, settings_from(FederatedSettings, config.method))
    fp["clients"] = [[cl["name"], cl["examples"]] for cl in summary["clients"]]
    ckpt = RoundCheckpoints(workdir, fp, keep=2)
    try:
        assert ckpt.read_meta(len(entries))["rounds_log"] == rounds
    finally:
        ckpt.close()


def test_pilot_aggregate_returns_the_ata_weights_it_mixed_the_lora_with():
    rng = np.random.default_rng(0)
    lora = {"a": jnp.asarray(rng.normal(size=(5, 3, 2)), jnp.float32)}
    adapters = {"w": jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)}
    n = jnp.asarray([10.0, 20.0, 10.0, 30.0, 10.0])
    valid = jnp.asarray([True, True, False, True, True])
    task = jnp.asarray([0, 0, 1, 1, 1])
    _, mixed, w = pilot_aggregate(adapters, lora, task, n, valid, 2, 2)
    np.testing.assert_array_equal(w, ata_weights(flatten_clients(lora), n, valid, 2))
    want = np.einsum("kj,jab->kab", np.asarray(w), np.asarray(lora["a"]))
    np.testing.assert_allclose(mixed["a"], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(w[2], np.eye(5)[2])  # a rejected client keeps its own


@pytest.mark.slow  # two compiled client programs and their evaluators: minutes on 2 loaded cores
def test_pilot_records_round_scores_and_ata_weights(tmp_path):
    c = _config("test,approach=pilot,base_steps=0,rounds=2,epochs=1,round_eval_num=4")
    s = F.run_federated(c, str(tmp_path))["summary"]
    _check_round_log(c, s, str(tmp_path), [(1, "stage1"), (1, "stage2"), (2, "stage2")])
    for r in s["rounds"]:
        w = np.asarray(r["aggregation_weights"])
        # Eq. (16) with equal data sizes and M = 3 neighbours: self weight 1/4, three neighbours.
        np.testing.assert_allclose(np.diag(w), 0.25, atol=1e-6)
        assert ((w > 0).sum(axis=1) == 4).all()
    # The final evaluation leaves one predictions file per client, which collect pairs up.
    where, keys, scores = final_scores(str(tmp_path))
    assert where.endswith("eval") and len(keys) == len(scores) == 4 * 4  # 4 tasks x 4 samples
    assert keys == sorted(keys) and all(k.split("/")[0] in c.data.tasks for k in keys)


def test_fedavg_records_data_size_weights_and_scores_equal_models_once(tmp_path, monkeypatch):
    from jaxlvlm.federated import run_parts

    calls = []
    make = run_parts.RS.make_weights_evaluator

    def counting(run):
        evaluate = make(run)

        def wrapped(*a, **kw):
            calls.append(1)
            return evaluate(*a, **kw)

        return wrapped

    monkeypatch.setattr(run_parts.RS, "make_weights_evaluator", counting)
    c = _config("test,approach=fedavg,base_steps=0,rounds=2,epochs=1,round_eval_num=4")
    s = F.run_federated(c, str(tmp_path))["summary"]
    _check_round_log(c, s, str(tmp_path), [(1, "baseline"), (2, "baseline")])
    for r in s["rounds"]:
        w = np.asarray(r["aggregation_weights"])
        np.testing.assert_allclose(w, 1 / 8, atol=1e-6)  # 2 x 4 clients of 8 samples each
    # Every client holds the same average: one evaluation per task per round and at the end.
    assert len(calls) == 4 * 3
    preds = [os.path.join(tmp_path, "eval", f) for f in os.listdir(tmp_path / "eval")]
    assert len(preds) == 8  # still one file per client, for collect


def test_federated_final_scores_average_the_clients_of_a_task(tmp_path):
    def write(path, rows):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.writelines(json.dumps(dict(id=i, task=t, score=x)) + "\n" for t, i, x in rows)

    cell = tmp_path / "fedavg"
    write(str(cell / "eval" / "predictions_a_0.jsonl"), [("a", "a-1", 1.0), ("a", "a-0", 1.0)])
    write(str(cell / "eval" / "predictions_a_1.jsonl"), [("a", "a-0", 0.0), ("a", "a-1", 1.0)])
    write(str(cell / "eval" / "predictions_b_0.jsonl"), [("b", "b-0", 1.0)])
    write(str(cell / "base" / "predictions.jsonl"), [("x", "x-0", 1.0)])  # base validation
    where, keys, scores = final_scores(str(cell))
    assert keys == ["a/a-0", "a/a-1", "b/b-0"] and scores == [0.5, 1.0, 1.0]
    central = tmp_path / "centralized"
    write(str(central / "centralized" / "predictions.jsonl"), [("a", "a-0", 1.0), ("b", "b-0", 0)])
    assert final_scores(str(central))[1:] == (["a/a-0", "b/b-0"], [1.0, 0.0])
    write(str(cell / "eval" / "predictions_a_1.jsonl"), [("a", "a-0", 0.0)])
    with pytest.raises(ValueError, match="differ from .*predictions_a_0.jsonl's, a client of"):
        final_scores(str(cell))


def test_a_base_shared_by_method_bench_is_reused_not_retrained(tmp_path, monkeypatch):
    """tools.method_bench copies the first cell's base (cells.BASE_SHARED) into the other cells
    of the seed: the federated runner must read it back from the same paths."""
    import jax

    from jaxlvlm.train import phase
    from jaxlvlm.train.base_model import base_params
    from tools.method_bench import __main__ as bench
    from tools.method_bench.cells import COMPARISONS

    first = _config("test,approach=pilot,base_steps=2")
    tasks = list(first.data.tasks)
    comp = COMPARISONS["pilot_multimodal"]
    trained = base_params(first, bench.cell_dir(str(tmp_path), comp.name, "pilot", 0), tasks,
                          settings_from(FederatedSettings, first.method))  # fmt: skip
    copied, source = bench.share_base(comp, str(tmp_path), "fedavg", 0)
    assert copied == ["base"] and source == os.path.join(comp.name, "pilot", "seed0")

    def no_training(*a, **kw):
        raise AssertionError("the shared base was trained again")

    monkeypatch.setattr(phase, "train_loop", no_training)
    other = _config("test,approach=fedavg,base_steps=2")
    reused = base_params(other, bench.cell_dir(str(tmp_path), comp.name, "fedavg", 0), tasks,
                         settings_from(FederatedSettings, other.method))  # fmt: skip
    for a, b in zip(jax.tree_util.tree_leaves(trained), jax.tree_util.tree_leaves(reused),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
