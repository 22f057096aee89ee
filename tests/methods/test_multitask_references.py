"""The single-task references' budgets and the probe learn check of the multi-task runner."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from configs import cotbal_builtin  # noqa: E402
from jaxlvlm.methods.multitask.references import exposure_steps, task_shares  # noqa: E402
from jaxlvlm.methods.multitask.settings import MultitaskSettings  # noqa: E402
from jaxlvlm.methods.settings import settings_from  # noqa: E402
from jaxlvlm.runners.multitask import probe_learn_check  # noqa: E402


def test_shares_follow_sample_counts_or_mixture_weights():
    c = cotbal_builtin.get_config("scenario=transfer")
    tasks = list(c.data.tasks)
    np.testing.assert_allclose(task_shares(c, tasks), np.full(5, 0.2))
    c.data.sources = tuple(dict(s, num=100 * (i + 1)) for i, s in enumerate(c.data.sources))
    np.testing.assert_allclose(task_shares(c, tasks), np.arange(1, 6) / 15)
    c.data.sources = tuple(dict(s, weight=1.0 if i else 3.0) for i, s in enumerate(c.data.sources))
    np.testing.assert_allclose(task_shares(c, tasks), [3 / 7] + [1 / 7] * 4)
    assert exposure_steps(300, task_shares(c, tasks)) == [129, 43, 43, 43, 43]
    assert exposure_steps(2, np.array([0.9, 0.1])) == [2, 1]  # at least one step each


def test_shares_need_sample_counts():
    c = cotbal_builtin.get_config("scenario=transfer")
    c.data.sources = tuple({k: v for k, v in s.items() if k != "num"} for s in c.data.sources)
    with pytest.raises(ValueError, match="has no 'num'"):
        task_shares(c, list(c.data.tasks))


def test_probe_check_reports_the_margin_over_the_mini_model():
    s = settings_from(MultitaskSettings, cotbal_builtin.get_config("scenario=transfer").method)
    tasks = ["digits", "digit_pair", "counting", "counting_noisy", "arithmetic"]
    V = np.full((5, 5), 10.0)
    np.fill_diagonal(V, [30.0, 14.0, 15.0, 9.0, 50.0])
    v0 = np.array([20.0, 10.0, 10.0, 10.0, 40.0])
    out = probe_learn_check(V, v0, tasks, s)
    assert list(out) == tasks[:4]  # arithmetic has a fixed weight and no probe
    assert [out[t]["margin"] for t in tasks[:4]] == [10.0, 4.0, 5.0, -1.0]
    assert [out[t]["passed"] for t in tasks[:4]] == [True, False, True, False]


def test_transfer_scenario_and_settings_checks():
    c = cotbal_builtin.get_config("scenario=transfer,stl=true")
    assert c.data.tasks == ("digits", "digit_pair", "counting", "counting_noisy", "arithmetic")
    assert c.method.base_steps == 600 and c.method.stl_exposure
    base = {(s["family"], s["domain"]) for s in c.method.base_sources}
    tasks = {(s["family"], s["domain"]) for s in c.data.sources}
    assert not base & tasks  # every task is new to the base
    every = [*c.data.sources, *c.data.eval_sources, *c.method.val_sources, *c.method.base_sources]
    assert all(s["seed"] == 0 for s in every)  # the same data for every run seed
    with pytest.raises(ValueError, match="choose from"):
        cotbal_builtin.get_config("scenario=nope")
    none = cotbal_builtin.get_config("scenario=transfer,weightings=")
    with pytest.raises(ValueError, match="at least one, or none with"):
        settings_from(MultitaskSettings, none.method)
    settings_from(MultitaskSettings, cotbal_builtin.get_config("weightings=,stl=true").method)
    c.method.stl_steps = -1
    with pytest.raises(ValueError, match="stl_exposure=True needs"):
        settings_from(MultitaskSettings, c.method)
