"""The CoTBal comparison's tables: dI / dE against the same seed's references, claims, probes."""

import json
import os

import numpy as np

from tools.method_bench.collect import collect
from tools.method_bench.cotbal_tables import render
from tools.method_bench.tables_common import Cells

TASKS = ["digits", "digit_pair", "counting", "counting_noisy", "arithmetic"]
IDS = [f"{t}-{i}" for t in TASKS for i in range(10)]


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def _cell(runs, name, seed, summary, per_sample=None):
    d = os.path.join(runs, "cotbal", name, f"seed{seed}")
    _write(os.path.join(d, "summary.json"), {"tasks": TASKS, "base_scores": [5.0] * 5, **summary})
    _write(os.path.join(d, "cell.json"), {"wall_s": 100.0 + seed, "load_before": [2.0, 1, 1],
                                          "load_after": [2.5, 1, 1]})  # fmt: skip
    _write(os.path.join(d, "base", "phase.json"), {"steps": 400, "max_steps": 600,
                                                  "scores": {"digits-textured": 0.6}})  # fmt: skip
    if per_sample is not None:
        os.makedirs(os.path.join(d, f"final_{name}"), exist_ok=True)
        with open(os.path.join(d, f"final_{name}", "predictions.jsonl"), "w") as f:
            for i, s in zip(IDS, per_sample, strict=True):
                f.write(json.dumps({"id": i, "task": i.split("-")[0], "score": float(s)}) + "\n")


def _run(name, scores, lam=None):
    run = {"scores": scores, "wall_s": 50.0, "last_weights": lam or [1.0] * 5}
    return {"runs": {name: run}, "train_steps": 300}


def _tree(tmp_path):
    runs, dest = str(tmp_path / "runs"), str(tmp_path / "committed")
    rng = np.random.default_rng(0)
    for seed in range(3):
        base = (rng.random(len(IDS)) < 0.4).astype(float)
        better = np.maximum(base, (rng.random(len(IDS)) < 0.3).astype(float))
        ew = [40.0, 20.0, 50.0, 30.0, 60.0]
        cb = [44.0 + seed, 26.0, 52.0, 34.0, 60.0]  # higher on the hard tasks: lower dE
        lam = [0.9, 1.4, 0.8, 1.2, 1.0]
        # C[i, j]: digits -> digit_pair 0.3 vs 0.1 back; counting -> noisy 0.2 vs 0.05 + noise
        C = np.zeros((5, 5))
        C[0, 1], C[1, 0], C[2, 3], C[3, 2] = 0.3, 0.1, 0.2 + 0.01 * seed, 0.05
        cotbal = {"lam": lam, "C": C.tolist(), "probe_steps": {"mini": 100, "digits": 150,
                  "digit_pair": 100, "counting": 100, "counting_noisy": 100, "max_steps": 150},
                  "probe_check": {"digits": {"margin": 12.0, "passed": True},
                                  "digit_pair": {"margin": 3.0 + 3 * seed, "passed": seed > 0},
                                  "counting": {"margin": 6.0, "passed": True},
                                  "counting_noisy": {"margin": 5.0, "passed": True}}}  # fmt: skip
        _cell(runs, "ew", seed, _run("ew", ew), base)
        _cell(runs, "cotbal", seed, {**_run("cotbal", cb, lam), "cotbal": cotbal}, better)
        refs = {"runs": {}, "stl": [45.0, 30.0, 50.0, 35.0, 60.0],
                "stl_exposure": [30.0, 15.0, 40.0, 25.0, 50.0]}  # fmt: skip
        _cell(runs, "stl", seed, refs)
    return runs, dest


def test_cotbal_tables_from_collected_cells(tmp_path):
    runs, dest = _tree(tmp_path)
    assert sorted(collect(runs, dest, "cotbal")) == sorted(
        f"{c}/seed{k}" for c in ("ew", "cotbal", "stl") for k in range(3)
    )  # the references-only cell has no final evaluation to pair, and is still collected
    cells = Cells(dest, "cotbal")
    text = "\n".join(render(cells))
    # seed 0's digit_pair probe failed the check: every claim is over seeds 1 and 2 only.
    # CoTBal - EW mean over tasks: 3.8, 4.0 -> shown
    assert "Claim 1 (CoTBal mean score > EW's): **shown** over seeds [1, 2]" in text
    assert "Seeds [0] are left out of every claim" in text
    # dE against equal steps: EW drops on digits (-11.1%), digit_pair (-33.3%), counting_noisy
    # (-14.3%) -> mean 11.75%; CoTBal drops less (digit_pair -13.3%, counting_noisy -2.9%,
    # digits -2.2% at seed 0): lower dE in every seed
    assert "CoTBal dE < EW's (single task, equal total steps)): **shown**" in text
    assert (
        "| ew | -11.7 ± 0.0 | 11.7 ± 0.0 | 26.3 ± 0.0 | 0.0 ± 0.0 | 101 [100-102] | 2.5 |" in text
    )
    assert "C[digits -> digit_pair] > C[digit_pair -> digits]): **shown**" in text
    assert "| 0 | digit_pair | 3.0 | **no** | 100 | 150 |" in text
    assert "| 1 | digit_pair | 6.0 | yes | 100 | 150 |" in text
    assert "| single task, equal per-task exposure | 3 | 32.0 ± 0.0 |" in text
    assert "| 0 | 400 | 600 | digits-textured 60.0 | digits 5.0 / digit_pair 5.0" in text


def test_no_claim_where_the_probes_did_not_learn(tmp_path):
    runs, dest = _tree(tmp_path)
    for seed in (1, 2):  # now every seed has a failed probe
        path = os.path.join(runs, "cotbal", "cotbal", f"seed{seed}", "summary.json")
        s = json.load(open(path))
        s["cotbal"]["probe_check"]["counting"] = {"margin": 1.0, "passed": False}
        _write(path, s)
    collect(runs, dest, "cotbal")
    text = "\n".join(render(Cells(dest, "cotbal")))
    assert "No claim is decided" in text and "Seeds [0, 1, 2] are left out" in text
    assert "**shown**" not in text


def test_the_cotbal_figures_draw(tmp_path):
    from tools.method_bench.figure_sets import FIGURES

    runs, dest = _tree(tmp_path)
    collect(runs, dest, "cotbal")
    figs = FIGURES["cotbal"](Cells(dest, "cotbal"))
    assert [f.name for f in figs] == ["final_scores", "weights", "contribution"]
    for f in figs:
        path = str(tmp_path / f"{f.name}.png")
        f.draw(path)
        assert open(path, "rb").read(4) == b"\x89PNG"
