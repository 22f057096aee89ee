"""CoTBal's probe plan follows the size guidance (rate with a floor, capped by the task), and each
probe stops on its own task's validation score."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from configs import cotbal_builtin  # noqa: E402
from jaxlvlm.errors import ConfigError  # noqa: E402
from jaxlvlm.methods.multitask.probes import probe_early_stop, probe_plan  # noqa: E402
from jaxlvlm.methods.multitask.settings import MultitaskSettings  # noqa: E402
from jaxlvlm.methods.settings import settings_from  # noqa: E402

TASKS = ("a", "b", "c")


def _config(nums):
    c = cotbal_builtin.get_config("test")
    c.data.tasks = TASKS
    c.data.sources = tuple(
        dict(type="builtin", family="counting", split="train", num=n, task=t)
        for t, n in zip(TASKS, nums, strict=True)
    )
    return c


def _nums(specs):
    out = {}
    for s in specs:
        out[s["task"]] = out.get(s["task"], 0) + s["num"]
    return out


def test_subset_sizes_take_the_floor_and_stop_at_the_task_size():
    s = MultitaskSettings(mini_rate=1 / 32, large_rate=1.0, mini_min_samples=1000,
                          large_min_samples=10000, unbalanced=("c",))  # fmt: skip
    plan = probe_plan(_config((64000, 2000, 500)), TASKS, s)
    # mini: 1/32 of 64k = 2000 (above the floor); 2000 and 500 are lifted to the floor, capped.
    assert _nums(plan["mini"]) == {"a": 2000, "b": 1000, "c": 500}
    # a probe: its own task at large_rate with the 10k floor (capped), the others' mini subsets.
    assert _nums(plan["a"]) == {"a": 64000, "b": 1000, "c": 500}
    assert _nums(plan["b"]) == {"a": 2000, "b": 2000, "c": 500}
    assert "c" not in plan  # a fixed-weight task has no probe


def test_a_task_of_several_sources_is_subsampled_in_proportion():
    c = _config((3000, 1000, 1000))
    c.data.sources = (*c.data.sources, dict(c.data.sources[0], num=1000, domain="palette"))
    s = MultitaskSettings(mini_rate=1 / 8, mini_min_samples=0, large_min_samples=0)
    mini = [x for x in probe_plan(c, TASKS, s)["mini"] if x["task"] == "a"]
    assert [x["num"] for x in mini] == [375, 125]  # 500 of task a's 4,000, split 3:1


def test_probe_stops_on_its_own_task_and_the_mini_model_on_the_balanced_mean():
    s = MultitaskSettings(probe_min_steps=100, probe_max_steps_ratio=1.0, probe_eval_every=50,
                          probe_patience=2, unbalanced=("c",))  # fmt: skip
    rising_a = [{"a": x, "b": 0.9 - x, "c": 0.0} for x in (0.1, 0.2, 0.3)]
    flat_a = [{"a": 0.5, "b": x, "c": 0.0} for x in (0.1, 0.2, 0.3)]
    stop_a = probe_early_stop("a", TASKS, s, final_steps=1000)
    assert not stop_a(150, rising_a)  # its own score still improves
    assert stop_a(150, flat_a)  # its own score stopped improving, whatever b does
    assert not stop_a(50, flat_a)  # never before probe_min_steps
    assert stop_a(1000, rising_a)  # always at the cap
    mini = probe_early_stop("mini", TASKS, s, final_steps=1000)
    # a + b rises by 0.1 per check in rising_b, c (fixed weight) is not watched.
    rising_b = [{"a": 0.5, "b": x, "c": 1.0 - x} for x in (0.1, 0.2, 0.3)]
    assert not mini(150, rising_b) and mini(
        150, [{"a": 0.5, "b": 0.5, "c": x} for x in (0.1, 0.2, 0.3)]
    )


def test_bad_probe_settings_are_refused_with_the_key():
    c = _config((16, 16, 16))
    c.method.probe_patience = 0
    with pytest.raises(ConfigError, match="patience"):
        settings_from(MultitaskSettings, c.method)
    c.method.probe_patience = 2
    c.method.probe_steps = -1
    with pytest.raises(ConfigError, match="probe_steps"):
        settings_from(MultitaskSettings, c.method)


def test_the_config_sets_the_probe_cap_the_benchmark_scenario_asks_for():
    for arg, cap in (("scenario=transfer,steps=300", 150), ("scenario=transfer,steps=300,"
                     "probe_max_ratio=1.0", 300)):  # fmt: skip
        s = settings_from(MultitaskSettings, cotbal_builtin.get_config(arg).method)
        stop = probe_early_stop("digits", ("digits", "counting"), s, final_steps=300)
        rising = [{"digits": x, "counting": 0.0} for x in (0.1, 0.2, 0.3)]
        assert not stop(cap - 50, rising) and stop(cap, rising)  # stops at the cap, not before
