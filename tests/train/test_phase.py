"""A complete phase: a rerun reads its record; a rerun under a config that trains differently is
refused naming the key (never answered silently with the old result)."""

import importlib.util
import os

import pytest

from jaxlvlm import main as M
from jaxlvlm.train.fingerprint import ConfigDriftError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _demo(steps=2):
    spec = importlib.util.spec_from_file_location("demo", os.path.join(ROOT, "configs", "demo.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("test")
    c.train.steps = steps
    c.eval.enabled = False
    return c


def test_complete_phase_is_read_back_or_refused_under_another_config(tmp_path):
    workdir = str(tmp_path / "run")
    first = M.run(_demo(), workdir)
    again = M.run(_demo(), workdir)  # complete: read back, not retrained
    assert int(again["state"].step) == int(first["state"].step) == 2
    c = _demo(steps=3)
    c.train.log_every = 3  # a key that does not change training is fine on its own
    with pytest.raises(ConfigDriftError, match=r"train\.steps was 2, now 3") as e:
        M.run(c, workdir)
    assert M.exit_code(e.value) == 2


def test_early_stop_ends_the_phase_and_a_resume_stops_where_it_would_have(tmp_path):
    """A phase stops after the evaluation at which early_stop says so, checkpointed there; a run
    interrupted before its record resumes with the evaluations it had and does not train on."""
    from jaxlvlm.train import phase as P
    from jaxlvlm.train.checkpoint import Checkpointer

    c = _demo(steps=8)
    c.eval.enabled = True
    c.train.eval_every = 2
    c.train.checkpoint_every = 8
    seen = []

    def stop(step, evals):  # stop once three evaluations were made, whatever their scores
        seen.append((step, len(evals)))
        return len(evals) >= 3

    workdir = str(tmp_path / "run")
    res = P.run_phase(c, workdir, early_stop=stop)
    assert seen == [(2, 1), (4, 2), (6, 3)]
    assert res.record["steps"] == 6 and res.record["max_steps"] == 8
    assert int(res.state.step) == 6
    ckpt = Checkpointer(workdir)
    assert ckpt.latest_step() == 6  # saved at the stop although checkpoint_every is 8
    ckpt.close()
    # Killed after the stop's checkpoint, before phase.json: the rerun reads the three
    # evaluations back from metrics.jsonl and stops at once.
    os.remove(os.path.join(workdir, P.PHASE_FILE))
    seen.clear()
    again = P.run_phase(c, workdir, early_stop=stop)
    assert seen == [(6, 3)]
    assert again.record["resumed_from"] == 6 and again.record["steps"] == 6
