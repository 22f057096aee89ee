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
