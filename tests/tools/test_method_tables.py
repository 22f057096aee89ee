"""The method tables come from the summaries: collect, render, verdicts, and the README check."""

import json
import os

import numpy as np
import pytest

from tools import method_tables
from tools.method_bench.collect import collect
from tools.method_bench.lifelong_tables import render
from tools.method_bench.readme_blocks import markers
from tools.method_bench.tables_common import Cells

TASKS = ["digits", "counting_noisy", "counting_rare"]
IDS = [f"{t}-{i}" for t in TASKS for i in range(20)]


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def _run_cell(runs, approach, seed, acc, per_sample):
    d = os.path.join(runs, "lifelong", approach, f"seed{seed}")
    steps = [{"step": 0, "new": ["digits", "counting_noisy"], "selected": 10, "train_steps": 5,
              "selected_per_task": {"digits": 5, "counting_noisy": 5, "counting_rare": 0},
              "pool_after_per_task": {"digits": 4, "counting_noisy": 4, "counting_rare": 0},
              "cluster_sizes": [30, 10]},
             {"step": 1, "new": ["counting_rare"], "selected": 10, "train_steps": 5,
              "selected_per_task": {"digits": 4, "counting_noisy": 4, "counting_rare": 2},
              "pool_after_per_task": {"digits": 4, "counting_noisy": 4, "counting_rare": 2},
              "cluster_sizes": [20, 20]}]  # fmt: skip
    if approach == "joint":
        summary = {"tasks": TASKS, "final": [acc] * 3, "ACC": acc, "train_steps": 30}
        pred_dir = os.path.join(d, "joint")
    else:
        summary = {"tasks": TASKS, "matrix": [[acc] * 3, [acc] * 3], "steps": steps,
                   "metrics": {"ACC": acc, "F": 1.0, "RG": acc}}  # fmt: skip
        pred_dir = os.path.join(d, "step_1")
        os.makedirs(os.path.join(d, "step_0"), exist_ok=True)
        _write(os.path.join(d, "step_0", "predictions.jsonl.unused"), {})
    _write(os.path.join(d, "summary.json"), summary)
    _write(os.path.join(d, "cell.json"), {"wall_s": 10.0 + seed, "load_before": [1.0, 1, 1],
                                          "load_after": [1.5, 1, 1]})  # fmt: skip
    _write(os.path.join(d, "base", "phase.json"), {"steps": 300, "max_steps": 800,
                                                  "scores": {"counting": 0.5}})  # fmt: skip
    os.makedirs(pred_dir, exist_ok=True)
    with open(os.path.join(pred_dir, "predictions.jsonl"), "w") as f:
        for i, s in zip(IDS[::-1], per_sample[::-1], strict=True):  # any order: sorted by id
            f.write(json.dumps({"id": i, "task": i.split("-")[0], "score": float(s)}) + "\n")


def _tree(tmp_path):
    runs, dest = str(tmp_path / "runs"), str(tmp_path / "committed")
    rng = np.random.default_rng(0)
    for seed in range(3):
        base = (rng.random(len(IDS)) < 0.4).astype(float)
        better = base.copy()
        better[rng.choice(len(IDS), 15, replace=False)] = 1.0
        _run_cell(runs, "random", seed, 30.0 + seed, base)
        _run_cell(runs, "adapt_inf", seed, 40.0 + seed + 0.5 * (seed == 1), better)
        _run_cell(runs, "joint", seed, 50.0, better)
    return runs, dest


def test_collect_keeps_the_summaries_and_the_paired_scores(tmp_path):
    runs, dest = _tree(tmp_path)
    done = collect(runs, dest, "lifelong")
    assert len(done) == 9
    cells = Cells(dest, "lifelong")
    assert cells.seeds("adapt_inf") == [0, 1, 2] and cells.tasks() == TASKS
    ids = json.load(open(os.path.join(dest, "lifelong", "test_ids.json")))["ids"]
    assert ids == sorted(f"{i.split('-')[0]}/{i}" for i in IDS)
    assert cells.final_scores("random", 0).shape == (len(IDS),)
    assert cells.base_records("random")[0][1]["steps"] == 300
    # A cell evaluated on other samples cannot be paired: refused, naming the file.
    bad = os.path.join(runs, "lifelong", "random", "seed0", "step_1", "predictions.jsonl")
    with open(bad, "a") as f:
        f.write(json.dumps({"id": "extra-0", "task": "digits", "score": 1.0}) + "\n")
    with pytest.raises(ValueError, match="differ from"):
        collect(runs, dest, "lifelong")


def test_render_gives_verdicts_from_the_numbers(tmp_path):
    runs, dest = _tree(tmp_path)
    collect(runs, dest, "lifelong")
    text = "\n".join(render(Cells(dest, "lifelong")))
    # adapt_inf - random = 10, 10.5, 10 over the seeds: the interval excludes zero.
    assert "Claim 1 (Adapt-∞ > random (final ACC)): **shown**" in text
    assert "Claim 2" not in text  # no scorer cells: no claim rendered
    assert "| adapt_inf | 3 | 41.2 ± " in text
    assert "largest 62% [50%-75%]; empty 0; collapsed 0" in text


def test_readme_check_fails_when_stale_and_passes_after_rendering(tmp_path):
    runs, dest = _tree(tmp_path)
    readme = tmp_path / "README.md"
    begin, end = markers("lifelong")
    readme.write_text(f"# x\n\n{begin}\nold\n{end}\n")
    assert (
        method_tables.main([dest, "--collect_from", runs, "--readme", str(readme), "--check"]) == 1
    )
    assert method_tables.main([dest, "--readme", str(readme)]) == 0
    assert method_tables.main([dest, "--readme", str(readme), "--check"]) == 0
    assert "old" not in readme.read_text() and "Claim 1" in readme.read_text()


def test_one_seed_renders_values_without_intervals_or_claims(tmp_path):
    runs, dest = str(tmp_path / "runs"), str(tmp_path / "committed")
    ones = np.ones(len(IDS))
    _run_cell(runs, "random", 0, 30.0, ones)
    _run_cell(runs, "adapt_inf", 0, 40.0, ones)
    collect(runs, dest, "lifelong")
    text = "\n".join(render(Cells(dest, "lifelong")))
    assert "| adapt_inf | 1 | 40.0 (1 seed) |" in text
    assert "Claim 1" not in text  # a claim needs at least two seeds of both approaches


def test_the_committed_readme_tables_are_what_the_committed_summaries_give():
    root = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "method_runs", "bench")
    assert method_tables.main([root, "--check"]) == 0


def test_figures_are_drawn_linked_and_checked(tmp_path):
    runs, dest = _tree(tmp_path)
    readme = tmp_path / "README.md"
    begin, end = markers("lifelong")
    readme.write_text(f"# x\n\n{begin}\nold\n{end}\n")
    assert method_tables.main([dest, "--collect_from", runs, "--readme", str(readme)]) == 0
    figures = os.path.join(dest, "figures")
    drawn = sorted(os.listdir(figures))
    # the final scores of every approach, and the accuracy matrix of each stream approach
    assert drawn == ["lifelong__final_scores.png", "lifelong__matrix_adapt_inf.png",
                     "lifelong__matrix_random.png"]  # fmt: skip
    text = readme.read_text()
    assert "](committed/figures/lifelong__matrix_adapt_inf.png)" in text
    assert all(open(os.path.join(figures, f), "rb").read(4) == b"\x89PNG" for f in drawn)
    assert method_tables.main([dest, "--readme", str(readme), "--check"]) == 0
    os.remove(os.path.join(figures, drawn[0]))  # a linked figure is missing: the check fails
    assert method_tables.main([dest, "--readme", str(readme), "--check"]) == 1


def test_the_claims_summary_carries_each_comparisons_verdicts(tmp_path):
    from tools.method_bench.claims_summary import render as summary

    runs, dest = _tree(tmp_path)
    collect(runs, dest, "lifelong")
    lines = summary(dest)
    row = next(x for x in lines if x.startswith("| Adapt-∞ | lifelong stream | 1. "))
    assert row.endswith("| **shown** |") and "Adapt-∞ > random (final ACC)" in row
    assert not any("| 2. " in x for x in lines)  # no scorer cells: claim 2 is not decided
    readme = tmp_path / "README.md"
    begin, end = markers("lifelong")
    sbegin, send = markers("claims")
    readme.write_text(f"# x\n\n{sbegin}\n{send}\n\n{begin}\nold\n{end}\n")
    assert method_tables.main([dest, "--readme", str(readme), "--check"]) == 1
    assert method_tables.main([dest, "--readme", str(readme)]) == 0
    assert row in readme.read_text()


def test_table_rows_inverts_markdown_tables_and_refuses_ragged_rows():
    from jaxlvlm.eval.plots import markdown_table
    from tools.method_bench.claims_summary import table_rows

    rows = [["1", "a > b", "2.0 ± 1.0", "shown"], ["2", "a > c", "0.1 ± 3.0", "not separated"]]
    assert table_rows(markdown_table(["n", "claim", "diff", "verdict"], rows)) == rows
    assert table_rows(["No claim is decided yet."]) == []
    with pytest.raises(ValueError, match="has 3 cells"):
        table_rows(["| a | b |", "|---|---|", "| 1 | 2 | 3 |"])
