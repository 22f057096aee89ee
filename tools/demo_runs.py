"""The README's demo table from committed records of demo runs (seeds x attention query blocks).

python tools/demo_runs.py collect RUN_DIR --seed S --blocks B [--out docs/demo_runs/query_blocks]
    keeps what a finished `python -m jaxlvlm.main --config configs/demo.py` run recorded: its
    per-task scores and wall time (phase.json), its first and last training losses (metrics.jsonl),
    as seed{S}_blocks{B}.json.
python tools/demo_runs.py render [--dir docs/demo_runs/query_blocks] [--write]
    prints (and writes into README.md's demo-seeds block) a table: per seed, each task's score with
    and without the blocks, and per blocks setting the mean and range over the seeds.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools.method_bench.readme_blocks import show_block  # noqa: E402

TOOL = "python tools/demo_runs.py render"
DEFAULT_DIR = os.path.join(ROOT, "docs", "demo_runs", "query_blocks")
_NAME = re.compile(r"seed(\d+)_blocks(\d+)\.json$")


def collect(run_dir: str, seed: int, blocks: int) -> dict:
    """One finished demo run's record: scores, wall time, steps, first and last losses."""
    with open(os.path.join(run_dir, "phase.json")) as f:
        phase = json.load(f)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    losses = [[r["step"], r["loss"]] for r in rows if r.get("kind") == "train" and "loss" in r]
    if not losses or "scores" not in phase:
        raise ValueError(f"{run_dir}: no training losses or no scores; is the run finished?")
    return {"seed": seed, "attention_query_blocks": blocks, "scores": phase["scores"],
            "wall_s": phase["wall_s"], "steps": phase["steps"], "first_losses": losses[:3],
            "last_loss": losses[-1]}  # fmt: skip


def load(folder: str) -> list[dict]:
    runs = []
    for path in sorted(glob.glob(os.path.join(folder, "seed*_blocks*.json"))):
        if _NAME.search(path):
            with open(path) as f:
                runs.append(json.load(f))
    if not runs:
        raise FileNotFoundError(f"no seed*_blocks*.json records in {folder}")
    return runs


def table(runs: list[dict]) -> list[str]:
    """Per seed and task, the score with each blocks setting; then mean [min-max] over seeds."""
    tasks = sorted({t for r in runs for t in r["scores"]})
    settings = sorted({r["attention_query_blocks"] for r in runs}, reverse=True)
    seeds = sorted({r["seed"] for r in runs})
    by = {(r["seed"], r["attention_query_blocks"]): r for r in runs}
    head = ["seed"] + [f"{t}, blocks {b}" for t in tasks for b in settings]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for s in seeds:
        cells = [str(s)]
        for t in tasks:
            for b in settings:
                r = by.get((s, b))
                cells.append("-" if r is None else f"{r['scores'][t]:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["mean [min-max]"]
    for t in tasks:
        for b in settings:
            v = np.asarray([by[(s, b)]["scores"][t] for s in seeds if (s, b) in by])
            cells.append(f"{v.mean():.3f} [{v.min():.2f}-{v.max():.2f}]")
    lines.append("| " + " | ".join(cells) + " |")
    walls = [r["wall_s"] for r in runs]
    lines += ["", f"{len(runs)} runs of {runs[0]['steps']} steps, {min(walls):.0f}-"
              f"{max(walls):.0f} s each (training and evaluation, this process)."]  # fmt: skip
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("run_dir")
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("--blocks", type=int, required=True)
    c.add_argument("--out", default=DEFAULT_DIR)
    r = sub.add_parser("render")
    r.add_argument("--dir", default=DEFAULT_DIR)
    r.add_argument("--write", action="store_true")
    r.add_argument("--file", default=os.path.join(ROOT, "README.md"))
    r.add_argument("--block", default="demo-seeds")
    a = p.parse_args(argv)
    if a.cmd == "collect":
        record = collect(a.run_dir, a.seed, a.blocks)
        os.makedirs(a.out, exist_ok=True)
        path = os.path.join(a.out, f"seed{a.seed}_blocks{a.blocks}.json")
        with open(path, "w") as f:
            json.dump(record, f, indent=1)
        print(f"wrote {path}")
        return 0
    show_block(table(load(a.dir)), a.write, a.file, a.block, TOOL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
