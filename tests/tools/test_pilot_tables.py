"""The Pilot comparisons' tables come from synthetic federated cells: collect pairs the clients'
per-sample scores, the renderer gives verdicts, curves and ATA weights from the numbers."""

import json
import os

import numpy as np

from tools import method_tables
from tools.method_bench.cells import BASE_SHARED, COMPARISONS
from tools.method_bench.collect import collect
from tools.method_bench.pilot_tables import render
from tools.method_bench.readme_blocks import markers
from tools.method_bench.tables_common import Cells

TASKS = ["digits_palette", "digit_pair"]
CLIENTS = [f"{t}#{k}" for t in TASKS for k in range(2)]
N = 10  # test samples per task
IDS = {t: [f"{t}-test-s0-{i:06d}" for i in range(N)] for t in TASKS}


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def _preds(path, task, correct):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for i, ok in zip(IDS[task][::-1], correct[::-1], strict=True):  # any order: sorted by id
            f.write(json.dumps({"id": i, "task": task, "score": float(ok)}) + "\n")


def _cell(runs, comparison, approach, seed, correct):
    """One finished cell; correct: {client: [N] 0/1 per test sample of its task}."""
    d = os.path.join(runs, comparison, approach, f"seed{seed}")
    clients = [dict(name=c, task=c.split("#")[0], examples=800,
                    score=100.0 * float(np.mean(correct[c]))) for c in CLIENTS]  # fmt: skip
    per_task = {t: float(np.mean([c["score"] for c in clients if c["task"] == t])) for t in TASKS}
    w = np.full((4, 4), 0.1) + np.diag([0.6] * 4)  # own 0.7, same task 0.1, other tasks 0.2
    entries = (
        [(1, "stage1"), (1, "stage2"), (2, "stage2")]
        if approach == "pilot"
        else [(1, "baseline"), (2, "baseline")]
    )
    rounds = [
        dict(round=r, stage=st, seconds=1.0, local_steps=100, mean_train_ce=1.0 / (i + 1),
             eval={c["name"]: c["score"] - 10 * (len(entries) - 1 - i) for c in clients},
             eval_samples=5, aggregation_weights=w.tolist() if approach != "local" else None)
        for i, (r, st) in enumerate(entries)
    ]  # fmt: skip
    summary = dict(approach=approach, tasks=TASKS, clients=clients, per_task=per_task,
                   macro=float(np.mean(list(per_task.values()))), rounds=rounds, wall_s=5.0)  # fmt: skip
    if approach == "centralized":
        summary.update(rounds=[], train_steps=400)
        for t in TASKS:
            _preds(os.path.join(d, "centralized", f"{t}.part"), t, correct[f"{t}#0"])
        with open(os.path.join(d, "centralized", "predictions.jsonl"), "w") as f:
            for t in TASKS:
                f.write(open(os.path.join(d, "centralized", f"{t}.part")).read())
    else:
        for c in CLIENTS:
            _preds(os.path.join(d, "eval", f"predictions_{c.replace('#', '_')}.jsonl"),
                   c.split("#")[0], correct[c])  # fmt: skip
    _write(os.path.join(d, "summary.json"), summary)
    _write(os.path.join(d, "cell.json"), {"wall_s": 300.0 + seed, "load_before": [2.0, 1, 1],
                                          "load_after": [3.0, 1, 1], "copied_from_seed": []})  # fmt: skip
    _write(os.path.join(d, "base", "phase.json"), {"steps": 400, "max_steps": 800,
                                                  "scores": {"digits-plain": 0.9}})  # fmt: skip


def _tree(tmp_path, comparison="pilot_multimodal", approaches=("pilot", "fedavg", "local",
                                                                "centralized")):  # fmt: skip
    runs, dest = str(tmp_path / "runs"), str(tmp_path / "committed")
    rng = np.random.default_rng(0)
    for seed in range(3):
        base = {c: (rng.random(N) < 0.4).astype(float) for c in CLIENTS}
        better = {c: np.maximum(v, rng.random(N) < 0.5) for c, v in base.items()}
        for a in approaches:
            if a == "pilot":
                _cell(runs, comparison, a, seed, better)
            else:
                # centralized: both clients of a task are one model (the same answers)
                same = {c: base[c.split("#")[0] + "#0"] for c in CLIENTS}
                _cell(runs, comparison, a, seed, same if a == "centralized" else base)
    return runs, dest


def test_collect_and_render_a_pilot_comparison(tmp_path):
    runs, dest = _tree(tmp_path)
    assert len(collect(runs, dest, "pilot_multimodal")) == 12
    cells = Cells(dest, "pilot_multimodal")
    # One entry per test sample of each task (the two clients' scores averaged), paired across
    # approaches: the bootstrap's mean is the difference of the means over clients.
    ids = json.load(open(os.path.join(dest, "pilot_multimodal", "test_ids.json")))["ids"]
    assert ids == sorted(f"{t}/{i}" for t in TASKS for i in IDS[t])
    pilot = cells.summaries("pilot")[0]
    assert np.isclose(
        100 * cells.final_scores("pilot", 0).mean(),
        np.mean([c["score"] for c in pilot["clients"]]),
    )
    text = "\n".join(render(cells))
    assert "Claim 1 (Pilot > FedAvg (mean over clients)): **shown** over seeds [0, 1, 2]" in text
    assert "Claim 2 (Pilot > local (mean over clients)): **shown**" in text
    assert "fedprox" not in text  # absent approaches are left out, not shown empty
    # Curves: every schedule entry of every approach; centralized at the end only.
    assert "| pilot | round 1 (stage1) |" in text and "| fedavg | round 2 |" in text
    assert "| centralized | end only (no rounds) |" in text
    # ATA weights split per client: own 0.7, the other client of its task 0.1, other tasks 0.2.
    assert "| round 2 (stage2) | digit_pair#1 | 0.700 | 0.100 | 0.200 | digits_palette#0 |" in text
    assert "| 1 | 400 | 800 | digits-plain 90.0 |" in text
    assert "| local | 2 | 302 | 2.0 | 3.0 | no (trained it) |" in text


def test_centralized_end_point_uses_the_round_evaluations_samples(tmp_path):
    runs, dest = _tree(tmp_path, approaches=("pilot", "centralized"))
    collect(runs, dest, "pilot_multimodal")
    cells = Cells(dest, "pilot_multimodal")
    row = [x for x in render(cells) if x.startswith("| centralized | end only")][0]
    first5 = [
        100 * np.mean(np.r_[cells.final_scores("centralized", k)[:5],
                            cells.final_scores("centralized", k)[N:N + 5]])
        for k in range(3)
    ]  # fmt: skip
    assert row.split("|")[3].strip().startswith(f"{np.mean(first5):.1f} ± ")
    assert "No claim is decided yet" in "\n".join(render(cells))  # no FedAvg or local cells


def test_the_readme_block_of_a_pilot_comparison_renders_only_when_it_was_collected(tmp_path):
    runs, dest = _tree(tmp_path, comparison="pilot_mixed")
    readme = tmp_path / "README.md"
    blocks = [markers(n) for n in ("pilot_multimodal", "pilot_mixed")]
    readme.write_text("# x\n\n" + "\n\n".join(f"{b}\n{e}" for b, e in blocks) + "\n")
    assert method_tables.main([dest, "--collect_from", runs, "--readme", str(readme)]) == 0
    text = readme.read_text()
    multimodal, mixed = text.split(blocks[1][0])
    assert "Claim 1" in mixed and "Claim" not in multimodal  # pilot_multimodal was not collected
    assert method_tables.main([dest, "--readme", str(readme), "--check"]) == 0


def test_the_pilot_comparisons_run_every_approach_from_one_base_per_seed():
    for name, scenario in (("pilot_multimodal", "multimodal"), ("pilot_mixed", "mixed")):
        comp = COMPARISONS[name]
        assert comp.config == "configs/federated_builtin.py" and comp.shared == BASE_SHARED
        assert comp.cell_names == ["pilot", "fedavg", "fedprox", "local", "centralized"]
        assert f"scenario={scenario}" in comp.args
        assert "per_client=800" in comp.args and "eval_num=300" in comp.args
        from configs.federated_builtin import get_config

        for cell in comp.cells:
            c = get_config(f"{comp.args},{cell.args}")  # every cell's arguments parse
            assert c.method.approach == cell.name and c.method.round_eval_num == 60


def test_the_pilot_figures_draw(tmp_path):
    from tools.method_bench.figure_sets import FIGURES

    runs, dest = _tree(tmp_path)
    collect(runs, dest, "pilot_multimodal")
    figs = FIGURES["pilot_multimodal"](Cells(dest, "pilot_multimodal"))
    assert [f.name for f in figs] == ["final_scores", "rounds"]
    for f in figs:
        path = str(tmp_path / f"{f.name}.png")
        f.draw(path)
        assert open(path, "rb").read(4) == b"\x89PNG"
