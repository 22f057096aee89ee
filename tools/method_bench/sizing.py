"""The continual comparisons' sizing check read from its cells (docs/benchmark.md, Continual LLaVA).

    python -m tools.method_bench.sizing runs/sizing [--copy_to docs/method_runs/sizing]

For each stream's seq_ft cell of seed 0 (``--comparison continual_* --cells seq_ft --seeds 0``):
each task's score right after its own training (the learnability gate reads these), and the cost
terms of docs/benchmark.md's budget formula, measured from the cell's phase records:
  t  seconds per training step (a task phase's wall minus one evaluation, over its steps),
  e  seconds per evaluation of the stream's test samples (the base evaluation's wall),
  c  seconds per cell outside its phases (process start, data, compilation not inside a phase),
  b  seconds of the base phase,
and S = (10,800 - 189 e - 54 c - 9 b) / (216 t), the steps per task that fit three hours; and the
learnability gate per task (tools/method_bench/gate.py: twice the chance level computed from the
task's test samples, or 20 points for free-form answers), read on the cell's own config.
``--copy_to`` keeps the records it read (cell.json, summary.json, the phase.json files) so the
figures can be regenerated from committed files.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil

import numpy as np

from tools.method_bench.gate import cell_gate, verdict

BUDGET_S = 10_800
TASK_PHASES, EVALS, CELLS, BASES = 216, 189, 54, 9


def _read(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def stream_sizing(cell_dir: str) -> dict:
    """The sizing figures of one seq_ft cell directory."""
    cell, summary = _read(f"{cell_dir}/cell.json"), _read(f"{cell_dir}/summary.json")
    tasks = sorted(glob.glob(f"{cell_dir}/task_*/phase.json"))
    phases = {os.path.basename(os.path.dirname(p)): _read(p) for p in tasks}
    base, base_eval = (
        _read(f"{cell_dir}/base/phase.json"),
        _read(f"{cell_dir}/base_eval/phase.json"),
    )
    e = float(base_eval["wall_s"])
    t = float(np.mean([(p["wall_s"] - e) / p["steps"] for p in phases.values()]))
    b = float(base["wall_s"])
    inside = b + e + sum(p["wall_s"] for p in phases.values())
    c = float(cell["wall_s"]) - inside
    s = (BUDGET_S - EVALS * e - CELLS * c - BASES * b) / (TASK_PHASES * t)
    matrix = np.asarray(summary["matrix"], np.float64)
    gate = cell_gate(cell["command"], summary["tasks"])
    return {
        "tasks": summary["tasks"],
        "own_score": [float(matrix[i, i]) for i in range(len(summary["tasks"]))],
        "gate": gate,
        "steps": int(next(iter(phases.values()))["steps"]),
        "t": t, "e": e, "c": c, "b": b, "S": s,
        "cell_wall_s": float(cell["wall_s"]),
        "load": [cell["load_before"][0], cell["load_after"][0]],
        "commit": cell["commit"],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("root", help="the --out directory of the sizing cells")
    p.add_argument("--copy_to", default="")
    a = p.parse_args(argv)
    for cell_dir in sorted(glob.glob(os.path.join(a.root, "continual_*", "seq_ft", "seed0"))):
        if not os.path.exists(os.path.join(cell_dir, "cell.json")):
            continue
        stream = cell_dir.split(os.sep)[-3]
        r = stream_sizing(cell_dir)
        scores = ", ".join(f"{n} {x:.1f}" for n, x in zip(r["tasks"], r["own_score"], strict=True))
        print(f"{stream} (steps per task {r['steps']}, commit {r['commit'][:7]}, cell "
              f"{r['cell_wall_s']:.0f} s, load {r['load'][0]:.1f}-{r['load'][1]:.1f}):")  # fmt: skip
        print(f"  score after its own training: {scores}")
        verdicts = ", ".join(
            f"{n} {verdict(x, g)} ({x:.1f} vs {g['threshold']:.1f}"
            + (f", chance {g['chance']:.1f})" if g["chance"] is not None else ", free-form)")
            for n, x, g in zip(r["tasks"], r["own_score"], r["gate"], strict=True)
        )
        print(f"  gate: {verdicts}")
        print(f"  t {r['t']:.3f} s/step, e {r['e']:.1f} s, c {r['c']:.1f} s, b {r['b']:.0f} s "
              f"-> S = {r['S']:.0f} steps per task in {BUDGET_S} s")  # fmt: skip
        if a.copy_to:
            dest = os.path.join(a.copy_to, stream, "seq_ft", "seed0")  # the layout it reads
            for rel in ["cell.json", "summary.json", "base/phase.json", "base_eval/phase.json",
                        *[os.path.relpath(x, cell_dir)
                          for x in glob.glob(f"{cell_dir}/task_*/phase.json")]]:  # fmt: skip
                os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
                shutil.copy2(os.path.join(cell_dir, rel), os.path.join(dest, rel))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
