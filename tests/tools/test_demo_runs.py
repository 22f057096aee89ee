"""tools/demo_runs.py: records of demo runs, their table, and the README block made from them."""

import json
import os

import pytest

from tools import demo_runs as D
from tools.method_bench.readme_blocks import markers


def _run_dir(tmp_path, name, scores, losses):
    d = tmp_path / name
    d.mkdir()
    (d / "phase.json").write_text(json.dumps({"scores": scores, "wall_s": 150.0, "steps": 1000}))
    rows = [{"step": s, "kind": "train", "loss": v} for s, v in losses]
    rows.append({"step": losses[-1][0], "kind": "eval", **scores})
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return str(d)


def test_collect_keeps_scores_wall_time_and_losses(tmp_path):
    d = _run_dir(
        tmp_path,
        "a",
        {"digits": 0.9, "arithmetic": 1.0},
        [(20, 2.0), (40, 1.0), (60, 0.5), (80, 0.1)],
    )
    rec = D.collect(d, seed=3, blocks=4)
    assert (
        rec["scores"] == {"digits": 0.9, "arithmetic": 1.0} and rec["attention_query_blocks"] == 4
    )
    assert rec["first_losses"] == [[20, 2.0], [40, 1.0], [60, 0.5]] and rec["last_loss"] == [
        80,
        0.1,
    ]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "phase.json").write_text(json.dumps({"wall_s": 1.0, "steps": 1}))
    (tmp_path / "b" / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="is the run finished"):
        D.collect(str(tmp_path / "b"), seed=0, blocks=1)


def test_table_pairs_seeds_and_summarises_each_setting():
    runs = [
        {
            "seed": s,
            "attention_query_blocks": b,
            "scores": {"t": v},
            "wall_s": 100.0 + s,
            "steps": 10,
        }
        for s, b, v in [(0, 4, 0.5), (0, 1, 0.7), (1, 4, 0.9), (1, 1, 0.8)]
    ]
    lines = D.table(runs)
    assert lines[0] == "| seed | t, blocks 4 | t, blocks 1 |"
    assert lines[2] == "| 0 | 0.50 | 0.70 |" and lines[3] == "| 1 | 0.90 | 0.80 |"
    assert lines[4] == "| mean [min-max] | 0.700 [0.50-0.90] | 0.750 [0.70-0.80] |"
    assert lines[-1].startswith("4 runs of 10 steps, 100-101 s each")


@pytest.mark.parametrize(
    "block, folder",
    [("demo-seeds", D.DEFAULT_DIR),
     ("demo-seeds-current", os.path.join(D.ROOT, "docs", "demo_runs", "current"))],
)  # fmt: skip
def test_readme_holds_the_generated_demo_block(block, folder):
    text = open(os.path.join(D.ROOT, "README.md")).read()
    want = "\n".join(D.table(D.load(folder)))
    begin, end = markers(block, D.TOOL)
    assert f"{begin}\n{want}\n{end}" in text, (
        f"rerun python tools/demo_runs.py render --dir {folder} --block {block} --write"
    )
