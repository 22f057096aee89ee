"""Runs every cell of a method comparison, resumably (docs/benchmark.md).

    python -m tools.method_bench --comparison lifelong --out runs/bench [--seeds 0,1,2]
        [--cells adapt_inf,random] [--finished_in docs/method_runs/bench] [--dry_run]

Each cell is its own process (``python -m jaxlvlm.main``), its log in <cell>/run.log. A cell whose
summary.json exists is finished and not rerun; an interrupted one resumes from its checkpoints
when run again (the runners resume). Beside the summary, cell.json records the command, the
commit, the wall time and the machine's load average before and after, so a reader can tell a
quiet run from a loaded one. Cells run in the order of the comparison, seed by seed; the base
model is trained by the first cell of a seed and copied into the others (cells.Comparison.shared).

A run does not outlive its session, and a new session may start on a fresh machine without the
run directories. ``--finished_in`` names a committed tree of collected cells (collect.py's
destination): a cell collected there counts as finished too, so a comparison spread over sessions
resumes from what was committed. Such a cell's base is not there (only its records are), so the
next cell of that seed trains the base again from the same seed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from tools.method_bench.cells import COMPARISONS, Comparison

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cell_dir(out: str, comparison: str, cell: str, seed: int) -> str:
    return os.path.join(out, comparison, cell, f"seed{seed}")


def command(comp: Comparison, cell: str, seed: int, out: str) -> list[str]:
    """The cell's jaxlvlm.main command line."""
    c = comp.cell(cell)
    args = ",".join(a for a in (comp.args, c.args.format(out=out, seed=seed)) if a)
    return [
        sys.executable, "-m", "jaxlvlm.main",
        "--config", f"{comp.config}:{args}",
        "--workdir", cell_dir(out, comp.name, cell, seed),
        f"--config.seed={seed}",
    ]  # fmt: skip


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _base_sources(comp: Comparison, out: str, cell: str, seed: int) -> list[str]:
    """Workdirs of the same seed that may hold the shared base: the comparison's other cells, then
    those of ``comp.base_from`` (a comparison that trains the identical base)."""
    dirs = [cell_dir(out, comp.name, c, seed) for c in comp.cell_names if c != cell]
    if comp.base_from:
        dirs += [
            cell_dir(out, comp.base_from, c, seed) for c in COMPARISONS[comp.base_from].cell_names
        ]
    return dirs


def share_base(comp: Comparison, out: str, cell: str, seed: int) -> tuple[list[str], str | None]:
    """Copies the seed's shared paths (the base model) from a cell that has them into ``cell``'s
    workdir; returns (what was copied, the source workdir relative to ``out`` or None)."""
    dest = cell_dir(out, comp.name, cell, seed)
    copied = []
    for src in _base_sources(comp, out, cell, seed):
        if not os.path.exists(os.path.join(src, "base", "phase.json")):
            continue
        for rel in comp.shared:
            s, d = os.path.join(src, rel), os.path.join(dest, rel)
            if os.path.exists(s) and not os.path.exists(d):
                os.makedirs(dest, exist_ok=True)
                (shutil.copytree if os.path.isdir(s) else shutil.copy2)(s, d)
                copied.append(rel)
        return copied, os.path.relpath(src, out) if copied else None
    return copied, None


def finished_record(
    comp: Comparison, cell: str, seed: int, out: str, finished_in: str | None = None
) -> dict | None:
    """The cell.json record of a finished cell (its summary.json exists in ``out`` or, collected,
    in ``finished_in``) with ``skipped`` and where it was found; None if the cell has not
    finished."""
    for root in (out, finished_in):
        if not root:
            continue
        workdir = cell_dir(root, comp.name, cell, seed)
        if os.path.exists(os.path.join(workdir, "summary.json")):
            record_path = os.path.join(workdir, "cell.json")
            if not os.path.exists(record_path):
                raise FileNotFoundError(
                    f"{workdir} has a summary.json but no cell.json: not a method_bench cell; "
                    "move it away or delete it to rerun the cell"
                )
            with open(record_path) as f:
                return {**json.load(f), "skipped": True, "finished_at": workdir}
    return None


def run_cell(
    comp: Comparison,
    cell: str,
    seed: int,
    out: str,
    dry_run: bool = False,
    finished_in: str | None = None,
) -> dict:
    """Runs one cell unless finished (in ``out`` or collected in ``finished_in``); returns its
    cell.json record."""
    workdir = cell_dir(out, comp.name, cell, seed)
    record_path = os.path.join(workdir, "cell.json")
    cmd = command(comp, cell, seed, out)
    done = finished_record(comp, cell, seed, out, finished_in)
    if done is not None:
        return done
    if dry_run:
        return {"command": cmd, "dry_run": True}
    for dep in comp.cell(cell).after:
        if finished_record(comp, dep, seed, out, finished_in) is None:
            raise RuntimeError(f"cell {cell} seed {seed} needs cell {dep} of the same seed first")
    copied, copied_from = share_base(comp, out, cell, seed)
    os.makedirs(workdir, exist_ok=True)
    record = {
        "comparison": comp.name,
        "cell": cell,
        "seed": seed,
        "command": cmd,
        "commit": _git("rev-parse", "HEAD"),
        "tree_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "copied_from_seed": copied,
        "copied_from": copied_from,
        "load_before": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    t0 = time.perf_counter()
    with open(os.path.join(workdir, "run.log"), "a") as log:
        env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    record.update(
        wall_s=time.perf_counter() - t0, load_after=os.getloadavg(), returncode=rc,
        ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )  # fmt: skip
    with open(record_path, "w") as f:
        json.dump(record, f, indent=1)
    if rc != 0:
        raise RuntimeError(
            f"cell {cell} seed {seed} failed (exit {rc}); see {os.path.join(workdir, 'run.log')}; "
            "rerun the same command to resume it"
        )
    return record


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--comparison", required=True, choices=sorted(COMPARISONS))
    p.add_argument("--out", required=True, help="root of the runs (one workdir per cell)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--cells", default="", help="comma-separated cell names (default: all)")
    p.add_argument(
        "--finished_in",
        default=None,
        help="a committed tree of collected cells (e.g. docs/method_runs/bench): cells there are "
        "finished and not rerun",
    )
    p.add_argument("--dry_run", action="store_true", help="print the commands only")
    a = p.parse_args(argv)
    comp = COMPARISONS[a.comparison]
    cells = [c for c in a.cells.split(",") if c] or comp.cell_names
    for c in cells:
        comp.cell(c)  # unknown names fail before anything runs
    records = []
    for seed in (int(s) for s in a.seeds.split(",")):
        for cell in cells:
            r = run_cell(comp, cell, seed, a.out, a.dry_run, a.finished_in)
            keys = ("cell", "seed", "wall_s", "skipped", "finished_at")
            line = " ".join(r["command"]) if r.get("dry_run") else {k: r.get(k) for k in keys}
            print(json.dumps(line), flush=True)
            records.append(r)
    return records


if __name__ == "__main__":
    main()
