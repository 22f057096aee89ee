"""The continual comparisons' tables from synthetic cells: collect, claims, matrices, selections."""

import json
import os

import numpy as np
import pytest

from tools import method_tables
from tools.method_bench import continual_tables as CT
from tools.method_bench.collect import collect, final_predictions
from tools.method_bench.readme_blocks import markers
from tools.method_bench.tables_common import Cells

COMP = "continual_domain"
TASKS = ["digits", "digits-noisy", "digits-textured", "digits-palette"]
IDS = [f"{t}-test-{i}" for t in TASKS for i in range(10)]


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def _predictions(path, scores):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for i, s in zip(IDS, scores, strict=True):
            f.write(
                json.dumps({"id": i, "task": i.rsplit("-test-", 1)[0], "score": float(s)}) + "\n"
            )


def _matrix(forget: float) -> list[list[float]]:
    """A 4x4 matrix: each task scores 50 after its own step, then drops by ``forget`` at the end
    (the summary's metrics are given beside it, as the runner records them)."""
    a = np.full((4, 4), 10.0)
    for t in range(4):
        a[t, : t + 1] = 50.0
    a[3, :3] = 50.0 - forget
    return a.tolist()


def _cell(runs, approach, seed, acc, forget, per_sample, selection=None):
    d = os.path.join(runs, COMP, approach, f"seed{seed}")
    if approach == "joint":
        summary = {"approach": "joint", "tasks": TASKS, "final": [acc] * 4, "ACC": acc,
                   "base": [10.0] * 4, "wall_s": 5.0}  # fmt: skip
        _predictions(os.path.join(d, "joint", "predictions.jsonl"), per_sample)
    else:
        summary = {"approach": approach, "tasks": TASKS, "matrix": _matrix(forget),
                   "base": [10.0] * 4, "wall_s": 5.0,
                   "metrics": {"ACC": acc, "F": forget, "BWT": -forget, "FWT": 0.0}}  # fmt: skip
        if selection is not None:
            summary["pool_selection"] = selection
        for t, name in enumerate(TASKS):
            # Earlier tasks' evaluations score 0 everywhere: collect must take the last task's.
            scores = per_sample if t == 3 else np.zeros(len(IDS))
            _predictions(os.path.join(d, f"task_{t}_{name}", "predictions.jsonl"), scores)
        _predictions(os.path.join(d, "base_eval", "predictions.jsonl"), np.zeros(len(IDS)))
    _write(os.path.join(d, "summary.json"), summary)
    command = [
        "python",
        "-m",
        "jaxlvlm.main",
        "--config",
        f"configs/{COMP}.py:eval_num=20,approach={approach}",
    ]
    _write(os.path.join(d, "cell.json"), {"wall_s": 100.0 + seed, "load_before": [2.0, 1, 1],
                                          "load_after": [3.0, 1, 1], "copied_from_seed": [],
                                          "copied_from": None, "command": command})  # fmt: skip
    _write(os.path.join(d, "base", "phase.json"), {"steps": 300, "max_steps": 800,
                                                  "scores": {"counting": 0.5, "digit_pair": 0.25}})  # fmt: skip


# Task 0 and 1 share entry 3; tasks 2 and 3 select disjoint entries.
SELECTION = {
    "pool_size": 6, "top_m": 2, "kept_entries": 6,
    "top_entries": [[0, 3], [1, 3], [4, 5], [2, 0]],
    "mean_coefficient": [[0.6, 0, 0, 0.4, 0, 0], [0, 0.5, 0, 0.5, 0, 0],
                         [0, 0, 0, 0, 0.7, 0.3], [0.2, 0, 0.8, 0, 0, 0]],
}  # fmt: skip


def _tree(tmp_path):
    runs, dest = str(tmp_path / "runs"), str(tmp_path / "committed")
    rng = np.random.default_rng(0)
    for seed in range(3):
        base = (rng.random(len(IDS)) < 0.4).astype(float)
        _cell(runs, "seq_lora", seed, 30.0, 20.0 + seed, base)
        _cell(runs, "seq_ft", seed, 40.0, 5.0, base)  # forgets less than the method
        _cell(runs, "continual_llava", seed, 27.0 + seed, 4.0 + 2 * seed, base, SELECTION)
        _cell(runs, "joint", seed, 60.0, 0.0, base)
    return runs, dest


def test_collect_takes_the_last_tasks_predictions(tmp_path):
    runs, dest = _tree(tmp_path)
    cell = os.path.join(runs, COMP, "seq_ft", "seed0")
    assert final_predictions(cell).endswith(
        os.path.join("task_3_digits-palette", "predictions.jsonl")
    )
    assert len(collect(runs, dest, COMP)) == 12
    cells = Cells(dest, COMP)
    assert cells.tasks() == TASKS
    assert cells.final_scores("seq_ft", 0).sum() > 0  # not the zeros of task 0 or the base


def test_render_claims_matrices_forgetting_and_selections(tmp_path):
    runs, dest = _tree(tmp_path)
    collect(runs, dest, COMP)
    text = "\n".join(CT.render(Cells(dest, COMP)))
    # seq_lora F - method F = 16, 15, 14: shown; seq_ft F - method F = 1, -1, -3: crosses zero.
    assert "Claim 1 (Continual LLaVA forgets less than seq-LoRA (F lower)): **shown**" in text
    assert "Claim 2 (Continual LLaVA forgets less than seq-FT (F lower)): **not separated**" in text
    # ACC: method - seq_lora + 5 = 2, 3, 4: shown.
    assert "Claim 3 (Continual LLaVA final ACC >= seq-LoRA's - 5): **shown**" in text
    assert "| continual_llava | 3 | 28.0 ± 2.5 | 6.0 ± 5.0 |" in text
    assert "| joint | 3 | 60.0 ± 0.0 | - | - | - |" in text
    # The accuracy matrix mean (seq_ft: 50 on the diagonal, 45 for earlier tasks at the end).
    assert "| digits-palette | 45.0 | 45.0 | 45.0 | 50.0 |" in text
    # Forgetting per task of seq_lora: 20, 21, 22 on each of the first three tasks.
    assert "| seq_lora | 21.0 ± 2.5 | 21.0 ± 2.5 | 21.0 ± 2.5 |" in text
    # Selections: top-M overlap pairs (0,1) 0.5, (0,3) 0.5, others 0 -> 1/6; mass overlap
    # (0,1) 0.4, (0,3) 0.2, others 0 -> 0.1.
    assert (
        "| 0 | digits: 0 3; digits-noisy: 1 3; digits-textured: 4 5; digits-palette: 2 0 | 0.17 | 0.10 |"
        in text
    )
    assert "| digits | 1.00 | 0.40 | 0.00 | 0.20 |" in text
    assert "| 0 | 300 | 800 | counting 50.0 / digit_pair 25.0 |" in text
    assert "| seq_ft | 2 | 102 | 2.0 | 3.0 | trained |" in text
    # The gate: digits answer 0-9 (chance 10, threshold 20); seq_ft scores 50 after each task.
    assert "| threshold | 20.0 | 20.0 | 20.0 | 20.0 |" in text
    assert "| seq_ft seed 2 | 50.0 (pass) | 50.0 (pass) | 50.0 (pass) | 50.0 (pass) |" in text


def test_selection_overlap_by_hand():
    shared, mass = CT.selection_overlap(SELECTION)
    np.testing.assert_allclose(np.diag(shared), 1.0)
    np.testing.assert_allclose(np.diag(mass), 1.0)
    assert shared[0, 1] == 0.5 and shared[2, 3] == 0.0
    assert mass[0, 3] == pytest.approx(0.2) and mass[1, 2] == 0.0


def test_missing_cells_render_without_claims(tmp_path):
    runs, dest = str(tmp_path / "runs"), str(tmp_path / "committed")
    ones = np.ones(len(IDS))
    _cell(runs, "seq_ft", 0, 40.0, 5.0, ones)
    _cell(runs, "continual_llava", 0, 30.0, 3.0, ones)  # a cell without recorded selections
    collect(runs, dest, COMP)
    text = "\n".join(CT.render(Cells(dest, COMP)))
    assert "No claim is decided yet" in text and "Claim 1" not in text
    assert "| continual_llava | 1 | 30.0 (1 seed) | 3.0 (1 seed) |" in text
    assert "| 0 | not recorded | - | - |" in text


def test_readme_blocks_of_continual_streams(tmp_path):
    runs, dest = _tree(tmp_path)
    readme = tmp_path / "README.md"
    b, e = markers(COMP)
    b2, e2 = markers("continual_dataset")  # no cells of this stream: its block is left alone
    readme.write_text(f"# x\n\n{b}\nold\n{e}\n\n{b2}\nkept\n{e2}\n")
    assert (
        method_tables.main([dest, "--collect_from", runs, "--readme", str(readme), "--check"]) == 1
    )
    assert method_tables.main([dest, "--readme", str(readme)]) == 0
    assert method_tables.main([dest, "--readme", str(readme), "--check"]) == 0
    text = readme.read_text()
    assert "\nold\n" not in text and "Claim 3" in text and "kept" in text
    assert set(CT.COMPARISONS) <= set(method_tables.RENDERERS)
