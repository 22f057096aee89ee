"""The parts of a federated run both engines share: the in-process runner (jaxlvlm.runners.federated)
and the Flower app (jaxlvlm.federated.flower). The run's fingerprint and finished-run check, the
task list, the clients' evaluation, the summary and the report.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from jaxlvlm.eval import plots
from jaxlvlm.files import (
    PathLike,
    read_json,
    run_path,
    safe_name,
    write_json_atomic,
    write_text_atomic,
)
from jaxlvlm.methods.pilot.settings import FederatedSettings
from jaxlvlm.train import run_setup as RS
from jaxlvlm.train.fingerprint import (
    EVALUATION,
    PLACEMENT,
    READING,
    check_fingerprint,
    fingerprint,
)
from jaxlvlm.train.phase_config import phase_config, task_specs

SUMMARY_FILE = "summary.json"

# Config sections that do not change what the rounds train (the rounds do not read train.*);
# evaluation keys are added back for the finished-run check (scores depend on them).
NOT_TRAINING = (*PLACEMENT, "train", *EVALUATION, *READING)


def run_fingerprint(config, s: FederatedSettings, *, evaluation: bool = False) -> dict:
    """{dotted key: value} of what shapes the run; the method section with defaults filled in."""
    d = {k: v for k, v in RS.config_json(config).items() if k != "method"}
    d["method"] = dataclasses.asdict(s)
    ignore = tuple(k for k in NOT_TRAINING if not (evaluation and k in EVALUATION))
    return fingerprint(d, ignore)


def read_summary(workdir: PathLike, finished: dict) -> dict | None:
    """The summary.json of a finished run (its fingerprint checked), or None."""
    path = run_path(workdir) / SUMMARY_FILE
    summary = read_json(path)
    if summary is not None:
        check_fingerprint(path, summary.get("config_fingerprint", {}), finished)
    return summary


def federated_tasks(config) -> list[str]:
    return list(config.data.tasks) or list(
        dict.fromkeys(dict(x)["task"] for x in config.data.sources)
    )


def evaluate_clients(config, workdir, tasks, clients, frozen, conn, loras, approach) -> list[float]:
    """Score in [0, 100] of each client's personalised model on its task's eval sources."""
    out, evaluators = [], {}
    for k, cl in enumerate(clients):
        if cl.task not in evaluators:
            evals = task_specs(config, cl.task, "eval_sources")
            c = phase_config(
                config, task_specs(config, cl.task), 1, tasks, eval_sources=evals, lora=True
            )
            if approach.eval_connector is not None:
                with c.unlocked():
                    c.model.connector = approach.eval_connector[0]
                    c.model.connector_kwargs = dict(approach.eval_connector[1])
            evaluators[cl.task] = RS.make_weights_evaluator(
                RS.prepare_run(c, run_path(workdir) / "eval")
            )
        result = evaluators[cl.task]({**frozen, "connector": conn[k]}, loras[k])
        out.append(100.0 * float(result.scores[cl.task]))
        path = run_path(workdir) / "eval" / f"predictions_{safe_name(cl.name)}.jsonl"
        RS.write_predictions(path, result.predictions)
    return out


def federated_summary(s: FederatedSettings, tasks, clients, scores, rounds_log, wall) -> dict:
    per_task = {
        t: float(np.mean([x for x, cl in zip(scores, clients, strict=True) if cl.task == t]))
        for t in tasks
    }
    return {
        "approach": s.approach,
        "tasks": tasks,
        "backend": s.backend,
        "clients": [
            dict(name=cl.name, task=cl.task, examples=cl.num_examples, score=x)
            for cl, x in zip(clients, scores, strict=True)
        ],
        "per_task": per_task,
        "macro": float(np.mean(list(per_task.values()))),
        "rounds": rounds_log,
        "wall_s": wall,
    }


def write_federated_report(workdir: PathLike, s: dict) -> str | None:
    """report.md, then summary.json (atomically: its presence marks the run finished), process 0."""
    if jax.process_index() != 0:
        return None
    lines = [f"# jaxlvlm: federated instruction tuning ({s['approach']})", ""]
    lines += [f"Macro score over tasks: {s['macro']:.2f}", ""]
    rows = [[t, v] for t, v in s["per_task"].items()]
    lines += plots.markdown_table(["task", "score (0-100)"], rows) + [""]
    rows = [[c["name"], c["task"], c["examples"], c["score"]] for c in s["clients"]]
    lines += plots.markdown_table(["client", "task", "examples", "score"], rows) + [""]
    if s["rounds"]:
        lines += ["## Rounds", ""] + rounds_table(s["rounds"]) + [""]
    lines += [f"Wall time: {s['wall_s']:.1f} s", ""]
    path = run_path(workdir) / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n", what="report")
    write_json_atomic(run_path(workdir) / SUMMARY_FILE, s, what="summary")
    return os.fspath(path)


def rounds_table(rounds: list[dict]) -> list[str]:
    header = [
        "round",
        "stage",
        "seconds",
        "local steps",
        "MB up",
        "MB down",
        "rejected",
        "train CE",
    ]
    rows = [
        [
            r["round"],
            r["stage"],
            r["seconds"],
            r["local_steps"],
            r["bytes_up"] / 1e6,
            r["bytes_down"] / 1e6,
            "; ".join(x["reason"] for x in r["rejected"]) or "-",
            r["mean_train_ce"],
        ]
        for r in rounds
    ]
    return plots.markdown_table(header, rows)
