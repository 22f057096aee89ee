"""mode 'multitask': weights in the train state survive checkpoint/resume; runner end to end."""

import json
import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from configs import cotbal_builtin  # noqa: E402
from jaxlvlm.methods import task_weighting as tw  # noqa: E402
from jaxlvlm.methods.multitask.hooks import weighting_hooks  # noqa: E402
from jaxlvlm.methods.multitask.settings import MultitaskSettings  # noqa: E402
from jaxlvlm.methods.settings import settings_from  # noqa: E402
from jaxlvlm.runners import multitask  # noqa: E402
from jaxlvlm.train import phase as P  # noqa: E402
from jaxlvlm.train.phase_config import phase_config  # noqa: E402

TASKS = ("counting", "arithmetic")


def _config(steps=2, **method):
    c = cotbal_builtin.get_config("test")
    c.data.sources = tuple(
        dict(type="builtin", family=f, split="train", num=16, task=f) for f in TASKS
    )
    c.data.eval_sources = tuple(
        dict(type="builtin", family=f, split="test", num=4, task=f) for f in TASKS
    )
    c.data.tasks = TASKS
    c.method.val_sources = tuple(
        dict(type="builtin", family=f, split="val", num=4, task=f) for f in TASKS
    )
    c.method.unbalanced = ()
    c.train.steps = steps
    c.train.checkpoint_every = 1
    for k, v in method.items():
        c.method[k] = v
    return c


def _dwa_phase(workdir, steps=3):
    wcfg = tw.WeightingConfig("dwa", len(TASKS), dwa_window=1, dwa_temperature=2.0)
    c = phase_config(_config(steps), _config().data.sources, steps, TASKS, eval_sources=())
    return P.run_phase(c, workdir, hooks=weighting_hooks(wcfg), evaluate=False)


class _Killed(Exception):
    pass


def _killed_after(monkeypatch, batches):
    """The phase's data ends after ``batches`` batches, as when the process is killed."""
    real = P.train_loop

    def loop(state, step_fn, data_iter, **kw):
        def dying():
            for _ in range(batches):
                yield next(data_iter)
            raise _Killed()

        gen = dying()

        class It:
            __next__ = lambda self: next(gen)
            get_state = lambda self: data_iter.get_state()

        return real(state, step_fn, It(), **kw)

    monkeypatch.setattr(P, "train_loop", loop)


@pytest.mark.slow  # multi-phase run, minutes on 2 cores; run with -m slow
def test_dwa_weights_survive_checkpoint_and_resume(tmp_path, monkeypatch):
    straight = _dwa_phase(str(tmp_path / "a"))
    # Killed during step 3: the phase's checkpoint at 2 exists, it was never marked complete.
    _killed_after(monkeypatch, 2)
    with pytest.raises(_Killed):
        _dwa_phase(str(tmp_path / "b"))
    monkeypatch.undo()
    assert not os.path.exists(tmp_path / "b" / "phase.json")
    resumed = _dwa_phase(str(tmp_path / "b"))
    assert resumed.resumed_from == 2
    ms_a = jax.device_get(straight.state.method_state)
    ms_b = jax.device_get(resumed.state.method_state)
    assert set(ms_a) == set(ms_b)
    for k in ms_a:
        np.testing.assert_array_equal(ms_a[k], ms_b[k], err_msg=k)
    # Two full windows were seen, so DWA weights are no longer uniform.
    assert not np.allclose(ms_a["task_weights"], 1.0)
    for x, y in zip(
        jax.tree_util.tree_leaves(jax.device_get(straight.state.params)),
        jax.tree_util.tree_leaves(jax.device_get(resumed.state.params)),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)


def test_runner_with_cotbal_file_and_tla(tmp_path):
    weights_file = tmp_path / "cotbal.json"
    weights_file.write_text(
        json.dumps(
            {
                "tasks": ["arithmetic", "counting"],
                "c_out": [0.1, 0.3],
                "c_in": [0.2, 0.1],
                "D": [0.2, 0.6],
            }
        )
    )
    c = _config(weightings=("tla", "cotbal"), cotbal_file=str(weights_file))
    out = multitask.run_multitask(c, str(tmp_path / "run"))
    s = out["summary"]
    lam = multitask.cotbal_weights_from_file(str(weights_file), list(TASKS))["lam"]
    np.testing.assert_allclose(s["runs"]["cotbal"]["last_weights"], lam, rtol=1e-6)
    np.testing.assert_allclose(s["cotbal"]["lam"], lam, rtol=1e-6)
    assert len(s["runs"]["tla"]["scores"]) == 2
    report = open(out["report"]).read()
    assert "| counting |" in report and "weights.png" in report
    assert os.path.exists(tmp_path / "run" / "weights.png")
    # A rerun finds every phase complete and trains nothing.
    again = multitask.run_multitask(c, str(tmp_path / "run"))
    assert again["summary"]["runs"]["tla"]["scores"] == s["runs"]["tla"]["scores"]


@pytest.mark.slow
def test_probe_phase_builds_V_and_resumes(tmp_path):
    c = _config(weightings=("cotbal",), stl_steps=0)
    out = multitask.run_multitask(c, str(tmp_path))
    probe = json.load(open(tmp_path / "probe_scores.json"))
    assert probe["tasks"] == list(TASKS)
    assert np.asarray(probe["V"]).shape == (2, 2) and len(probe["v0"]) == 2
    for name in ("mini", *TASKS):
        assert os.path.exists(tmp_path / "probes" / name / "phase.json")
    s = out["summary"]
    assert "delta_I" in s["runs"]["cotbal"] and "probe_cost_vs_final" in s["cotbal"]
    assert os.path.exists(tmp_path / "contribution.png")
    # An interrupted probe phase: one probe lost its completion mark after its last checkpoint.
    mtimes = {
        n: os.path.getmtime(tmp_path / "probes" / n / "phase.json") for n in ("mini", "arithmetic")
    }
    os.remove(tmp_path / "probes" / "counting" / "phase.json")
    again = multitask.run_multitask(c, str(tmp_path))
    info = json.load(open(tmp_path / "probes" / "counting" / "phase.json"))
    assert info["resumed_from"] == c.method.probe_steps  # restored, not retrained from step 0
    for n, t in mtimes.items():
        assert os.path.getmtime(tmp_path / "probes" / n / "phase.json") == t  # untouched
    np.testing.assert_allclose(again["summary"]["cotbal"]["lam"], s["cotbal"]["lam"])


def test_bad_method_settings():
    with pytest.raises(ValueError, match="unknown keys \\['nope'\\]"):
        settings_from(MultitaskSettings, _config(nope=1).method)
    with pytest.raises(ValueError, match="choose from"):
        settings_from(MultitaskSettings, _config(weightings=("foo",)).method)


@pytest.mark.slow  # seven real phases (base, its evaluation, four references, a final run)
def test_every_phase_starts_from_the_base_and_the_references_come_at_two_budgets(
    tmp_path, monkeypatch
):
    c = cotbal_builtin.get_config("test,scenario=transfer,weightings=ew,stl=true")
    tasks = ("digits", "counting_noisy")
    c.data.sources = tuple(s for s in c.data.sources if s["task"] in tasks)
    c.data.eval_sources = tuple(s for s in c.data.eval_sources if s["task"] in tasks)
    c.data.tasks = tasks
    c.data.sources = (dict(c.data.sources[0], num=24), dict(c.data.sources[1], num=8))
    c.train.steps = 4
    bases, inits = [], []
    real_base, real_phase = multitask.base_params, multitask.run_phase

    def base(*a, **kw):
        bases.append(real_base(*a, **kw))
        return bases[-1]

    def phase(config, workdir, **kw):
        inits.append((os.path.relpath(str(workdir), tmp_path), kw.get("init_params")))
        return real_phase(config, workdir, **kw)

    monkeypatch.setattr(multitask, "base_params", base)
    monkeypatch.setattr(multitask, "run_phase", phase)
    s = multitask.run_multitask(c, str(tmp_path))["summary"]
    assert len(bases) == 1 and os.path.exists(tmp_path / "base" / "phase.json")
    trained = sorted(w for w, _ in inits)
    assert trained == [
        "final_ew",
        "stl/counting_noisy",
        "stl/digits",
        "stl_exposure/counting_noisy",
        "stl_exposure/digits",
    ]
    assert all(p is bases[0] for _, p in inits)  # the base, not the model's init
    assert len(s["base_scores"]) == 2
    # equal total steps: 4 each; equal exposure: 4 x 24/32 = 3 and 4 x 8/32 = 1
    assert s["stl_steps"] == [4, 4] and s["stl_exposure_steps"] == [3, 1]
    for key, steps in (("stl", [4, 4]), ("stl_exposure", [3, 1])):
        for t, n in zip(tasks, steps, strict=True):
            assert json.load(open(tmp_path / key / t / "phase.json"))["steps"] == n
    run = s["runs"]["ew"]
    assert {"delta_I", "delta_E", "delta_I_exposure", "delta_E_exposure"} <= run.keys()


def test_the_runner_hands_the_base_to_every_phase_and_sizes_the_references(tmp_path, monkeypatch):
    """The wiring alone, phases faked (the slow test above trains them): the probes, both kinds of
    reference and every final run start from the one base, with the steps each budget gives."""
    c = cotbal_builtin.get_config("test,scenario=transfer,weightings=ew+cotbal,stl=true")
    c.train.steps = 10
    tasks = list(c.data.tasks)
    base = {"params": "the base"}
    calls = []

    class _State:
        method_state = {"task_weights": np.ones(len(tasks), np.float32)}

    def phase(config, workdir, init_params=None, **kw):
        name = os.path.relpath(str(workdir), tmp_path)
        calls.append((name, int(config.train.steps), init_params))
        own = 0.6 if name.startswith("probes/") and not name.endswith("mini") else 0.3
        scores = {t: own if name.endswith(t) else 0.3 for t in tasks}
        record = {"wall_s": 1.0, "steps": int(config.train.steps)}
        return P.PhaseResult(_State(), scores, record, None, 0)

    monkeypatch.setattr(multitask, "run_phase", phase)
    monkeypatch.setattr(multitask, "base_params", lambda *a, **kw: base)
    monkeypatch.setattr(multitask, "base_scores", lambda *a, **kw: np.full(len(tasks), 7.0))
    s = multitask.run_multitask(c, str(tmp_path))["summary"]
    assert all(p is base for _, _, p in calls)
    steps = {n: k for n, k, _ in calls}
    assert [steps[f"stl/{t}"] for t in tasks] == [10] * 5
    assert [steps[f"stl_exposure/{t}"] for t in tasks] == [2] * 5  # 10 x 1/5
    assert steps["final_ew"] == steps["final_cotbal"] == 10
    assert {f"probes/{t}" for t in tasks[:4]} | {"probes/mini"} <= steps.keys()
    assert "probes/arithmetic" not in steps  # fixed weight: no probe
    assert s["base_scores"] == [7.0] * 5 and s["stl_exposure_steps"] == [2] * 5
    check = s["cotbal"]["probe_check"]
    assert set(check) == set(tasks[:4]) and all(v["margin"] == 30.0 for v in check.values())
    assert {"delta_I_exposure", "delta_E_exposure"} <= s["runs"]["cotbal"].keys()


def test_rlw_draws_from_the_run_seed_unless_fixed():
    def weights(seed: int, overrides: dict) -> np.ndarray:
        c = cotbal_builtin.get_config("test")
        c.seed = seed
        for k, v in overrides.items():
            setattr(c.method, k, v)
        s = settings_from(MultitaskSettings, c.method)
        cfg = multitask.weighting_config(c, s, "rlw", 4)
        state = tw.init_weighting_state(cfg)
        return np.asarray(tw.task_weights(cfg, state, None, None, step=3))

    assert not np.allclose(weights(0, {}), weights(1, {}))  # the benchmark's seeds differ
    np.testing.assert_array_equal(weights(1, {}), weights(1, {}))
    fixed = {"rlw_seed": 5}
    np.testing.assert_array_equal(weights(0, fixed), weights(1, fixed))
    c = cotbal_builtin.get_config("test")
    c.seed, c.method.rlw_seed = 3, 7
    dwa = multitask.weighting_config(c, settings_from(MultitaskSettings, c.method), "dwa", 4)
    assert dwa.seed == 7 and dwa.dwa_absent_as_zero is False  # the seed lands in its own field
