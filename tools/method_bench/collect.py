"""Copies what the method tables need from a benchmark's run directories into a committed tree.

From <runs>/<comparison>/<cell>/seed<k>/ it keeps summary.json, cell.json, the base model's phase
record (base_phase.json: steps trained and validation scores) and the final evaluation's
per-sample scores (final_scores.json, in the order of <comparison>/test_ids.json, written once per
comparison and checked equal for every cell), and nothing else (no checkpoints, no predictions).

Where the final evaluation is (final_scores): a lifelong cell's joint/ or last step_*/
predictions.jsonl; a federated cell's eval/predictions_<client>.jsonl (one per client, averaged per
test sample over the clients of its task, see federated_scores) or, for 'centralized', the one
model's centralized/predictions.jsonl.
"""

from __future__ import annotations

import glob
import json
import os
import shutil


def final_predictions(cell_dir: str) -> str | None:
    """The predictions.jsonl of a cell's last evaluation: the joint phase's, a multi-task cell's
    one final run (final_<weighting>/), else the last phase's of the stream: step_<k>/
    (lifelong) or task_<t>_<name>/ (continual), by its number."""
    joint = os.path.join(cell_dir, "joint", "predictions.jsonl")
    if os.path.exists(joint):
        return joint
    finals = glob.glob(os.path.join(cell_dir, "final_*", "predictions.jsonl"))
    if len(finals) > 1:
        raise ValueError(
            f"{cell_dir}: {len(finals)} final runs ({', '.join(sorted(finals))}); a benchmark cell "
            "runs one approach"
        )
    if finals:
        return finals[0]
    for prefix in ("step_", "task_"):
        phases = glob.glob(os.path.join(cell_dir, f"{prefix}*", "predictions.jsonl"))
        if phases:
            return max(
                phases, key=lambda p: int(os.path.basename(os.path.dirname(p)).split("_")[1])
            )
    return None


def federated_scores(paths: list[str]) -> tuple[list[str], list[float]]:
    """(keys 'task/id', scores) of a federated cell from its clients' prediction files.

    Both clients of a task are evaluated on the same test split, so each test sample's score is
    the mean over the clients of its task (0, 0.5 or 1 for two clients): the keys are the task's
    test samples, the same for every approach (centralized's one model gives each sample one
    score, which is also its mean over the clients), and the mean of the scores is the mean over
    clients (every task has the same number of clients and test samples). A client whose samples
    differ from its task's other clients' is an error (the average would mix samples).
    """
    per_key: dict[str, list[float]] = {}
    per_task: dict[str, tuple[str, list[str]]] = {}
    for path in sorted(paths):
        ids, scores = read_predictions(path)
        task = ids[0].split("/", 1)[0] if ids else ""
        if task in per_task and per_task[task][1] != ids:
            raise ValueError(
                f"{path}: its test samples differ from {per_task[task][0]}'s, a client of the same "
                f"task {task!r}; its clients must be evaluated on the same samples"
            )
        per_task.setdefault(task, (path, ids))
        for k, x in zip(ids, scores, strict=True):
            per_key.setdefault(k, []).append(x)
    keys = sorted(per_key)
    return keys, [float(sum(per_key[k]) / len(per_key[k])) for k in keys]


def final_scores(cell_dir: str) -> tuple[str, list[str], list[float]] | None:
    """(where, keys, per-sample scores) of a cell's final evaluation, or None if it has none."""
    lifelong = final_predictions(cell_dir)
    if lifelong is not None:
        return (lifelong, *read_predictions(lifelong))
    central = os.path.join(cell_dir, "centralized", "predictions.jsonl")
    if os.path.exists(central):
        return (central, *read_predictions(central))
    clients = glob.glob(os.path.join(cell_dir, "eval", "predictions_*.jsonl"))
    if clients:
        return (os.path.join(cell_dir, "eval"), *federated_scores(clients))
    return None


def read_predictions(path: str) -> tuple[list[str], list[float]]:
    """(keys 'task/id', scores) sorted by key: a task evaluated on another task's samples (the
    lifelong stream's exact duplicates) keeps its own entries; a repeated key is an error (it would
    break the pairing)."""
    rows = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            p = json.loads(line)
            key = f"{p.get('task', '')}/{p['id']}"
            if key in rows:
                raise ValueError(f"{path}:{n}: test sample {key!r} appears twice")
            rows[key] = float(p["score"])
    ids = sorted(rows)
    return ids, [rows[i] for i in ids]


def _references_only(summary_path: str) -> bool:
    """A multi-task run without a weighting (method.weightings empty): only the references."""
    with open(summary_path) as f:
        s = json.load(f)
    return "runs" in s and not s["runs"] and "stl" in s


def _write(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def collect(runs: str, dest: str, comparison: str) -> list[str]:
    """Copies every finished cell of ``comparison``; returns the cells copied as 'cell/seedK'."""
    done = []
    ids_path = os.path.join(dest, comparison, "test_ids.json")
    for summary in sorted(glob.glob(os.path.join(runs, comparison, "*", "seed*", "summary.json"))):
        src = os.path.dirname(summary)
        rel = os.path.relpath(src, os.path.join(runs, comparison))
        out = os.path.join(dest, comparison, rel)
        os.makedirs(out, exist_ok=True)
        shutil.copy2(summary, os.path.join(out, "summary.json"))
        if not os.path.exists(os.path.join(src, "cell.json")):
            raise FileNotFoundError(
                f"{src} has a summary but no cell.json: not a method_bench cell"
            )
        shutil.copy2(os.path.join(src, "cell.json"), os.path.join(out, "cell.json"))
        base = os.path.join(src, "base", "phase.json")
        if os.path.exists(base):
            shutil.copy2(base, os.path.join(out, "base_phase.json"))
        found = final_scores(src)
        if found is None and _references_only(summary):
            done.append(rel)  # a multi-task cell of single-task references: nothing to pair
            continue
        if found is None:
            raise FileNotFoundError(f"{src}: no predictions.jsonl of a final evaluation")
        preds, ids, scores = found
        if os.path.exists(ids_path):
            with open(ids_path) as f:
                known = json.load(f)["ids"]
            if known != ids:
                raise ValueError(
                    f"{preds}: its test samples differ from {ids_path}'s; every cell of a "
                    "comparison must be evaluated on the same samples"
                )
        else:
            _write(ids_path, {"ids": ids})
        _write(os.path.join(out, "final_scores.json"), {"scores": scores})
        done.append(rel)
    return done
