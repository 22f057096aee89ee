"""The continual sizing check's figures come from the cell's records by docs/benchmark.md's formula."""

import json
import os

import pytest

from tools.method_bench.sizing import stream_sizing


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def test_cost_terms_and_steps_per_task(tmp_path):
    d = str(tmp_path / "continual_domain" / "seq_ft" / "seed0")
    command = [
        "python",
        "-m",
        "jaxlvlm.main",
        "--config",
        "configs/continual_capability.py:steps=98,eval_num=60,approach=seq_ft",
    ]
    _write(f"{d}/cell.json", {"wall_s": 400.0, "load_before": [1.0], "load_after": [2.0],
                              "commit": "abc1234", "command": command})  # fmt: skip
    # Tasks the config file does not list any more (replaced after the check) still read right.
    tasks = ["reading", "digit_pair"]
    _write(f"{d}/summary.json", {"tasks": tasks, "matrix": [[30.0, 5.0], [20.0, 40.0]]})
    _write(f"{d}/base/phase.json", {"wall_s": 200.0, "steps": 800})
    _write(f"{d}/base_eval/phase.json", {"wall_s": 10.0, "steps": 0})
    for i, wall in enumerate((40.0, 50.0)):
        _write(f"{d}/task_{i}_x/phase.json", {"wall_s": wall, "steps": 100})
    r = stream_sizing(d)
    assert r["own_score"] == [30.0, 40.0]
    reading, pair = r["gate"]
    assert reading == {"chance": None, "threshold": 20.0}  # free-form
    # digit_pair: a third of the questions ask a sum (19 values), the rest larger/smaller (10).
    assert 100 * (1 / 19 + 2 / 10) / 3 - 1.5 < pair["chance"] < 100 * (1 / 19 + 2 / 10) / 3 + 1.5
    assert pair["threshold"] == pytest.approx(2 * pair["chance"])
    assert r["e"] == 10.0 and r["b"] == 200.0
    assert r["t"] == pytest.approx(((40 - 10) / 100 + (50 - 10) / 100) / 2)  # 0.35 s per step
    assert r["c"] == pytest.approx(400 - (200 + 10 + 40 + 50))
    assert r["S"] == pytest.approx((10_800 - 189 * 10 - 54 * 100 - 9 * 200) / (216 * 0.35))
