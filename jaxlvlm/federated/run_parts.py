"""The parts of a federated run both engines share: the in-process runner (jaxlvlm.runners.federated)
and the Flower app (jaxlvlm.federated.flower). The run's fingerprint and finished-run check, the
task list, the clients' evaluation, the summary and the report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import jax
import numpy as np

from jaxlvlm.errors import ConfigError
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


def round_eval_sources(config, task: str, num: int) -> list[dict]:
    """The first ``num`` samples of each of ``task``'s eval sources (the per-round curves).

    Built-in records are pure functions of their index, so a spec with a smaller 'num' holds
    exactly the first samples of the final evaluation's split; other source types cannot be cut
    that way and are refused.
    """
    out = []
    for spec in task_specs(config, task, "eval_sources"):
        if spec.get("type") != "builtin":
            raise ConfigError(
                f"config.method.round_eval_num={num}: task {task!r} has a {spec.get('type')!r} "
                "eval source; the round evaluation takes the first samples of builtin sources only"
            )
        out.append(dict(spec, num=min(int(spec["num"]), num)))
    return out


def _digest(*trees) -> str:
    """A hash of every leaf's bytes (equal digests: the same parameters bit for bit)."""
    h = hashlib.sha1()
    for leaf in jax.tree_util.tree_leaves(trees):
        x = np.asarray(jax.device_get(leaf))
        h.update(str((x.shape, x.dtype)).encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


class ClientEvaluator:
    """Scores (0-100) of clients' personalised models on their task's eval samples.

    num: None = all of the task's eval sources (the final evaluation); N = the first N samples of
    each (round_eval_sources: the per-round curves). One evaluator per (task, connector) is built
    on first use and kept, so the generation compiles once per prompt shape for the whole run.
    Clients of one task whose connector and LoRA are equal bit for bit (FedAvg and FedProx send
    every client the same average) are scored once and share the result, which is what scoring
    each of them would give.
    """

    def __init__(self, config, workdir: PathLike, tasks, num: int | None = None):
        self.config, self.workdir, self.tasks, self.num = config, workdir, list(tasks), num
        self._evaluators: dict = {}

    def _evaluator(self, task: str, connector):
        key = (task, None if connector is None else (connector[0], repr(connector[1])))
        if key not in self._evaluators:
            config = self.config
            if self.num is None:
                evals = task_specs(config, task, "eval_sources")
            else:
                evals = round_eval_sources(config, task, self.num)
            c = phase_config(
                config, task_specs(config, task), 1, self.tasks, eval_sources=evals, lora=True
            )
            if connector is not None:
                with c.unlocked():
                    c.model.connector = connector[0]
                    c.model.connector_kwargs = dict(connector[1])
            self._evaluators[key] = RS.make_weights_evaluator(
                RS.prepare_run(c, run_path(self.workdir) / "eval")
            )
        return self._evaluators[key]

    def __call__(
        self, clients, frozen, conn, loras, connector=None, write_predictions: bool = False
    ) -> list[float]:
        """clients [K]; conn / loras: each client's connector parameters and LoRA; connector:
        (name, kwargs) of the connector the parameters belong to (None: the run's own).
        write_predictions: eval/predictions_<client>.jsonl per client (the final evaluation)."""
        out, done = [], {}
        for k, cl in enumerate(clients):
            key = (cl.task, _digest(conn[k], loras[k]))
            if key not in done:
                done[key] = self._evaluator(cl.task, connector)(
                    {**frozen, "connector": conn[k]}, loras[k]
                )
            result = done[key]
            out.append(100.0 * float(result.scores[cl.task]))
            if write_predictions:
                path = run_path(self.workdir) / "eval" / f"predictions_{safe_name(cl.name)}.jsonl"
                RS.write_predictions(path, result.predictions)
        return out


def evaluate_clients(config, workdir, tasks, clients, frozen, conn, loras, approach) -> list[float]:
    """Score in [0, 100] of each client's personalised model on its task's eval sources; each
    client's predictions in eval/predictions_<client>.jsonl."""
    return ClientEvaluator(config, workdir, tasks)(
        clients, frozen, conn, loras, approach.eval_connector, write_predictions=True
    )


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
