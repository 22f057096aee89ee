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
