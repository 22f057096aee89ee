"""The end-of-run report: <workdir>/report.md with per-task scores and PNG plots.

Plots (matplotlib, Agg backend): loss.png (training loss and per-task token loss over steps) and
scores.png (final per-task scores as bars). Inputs are the records of metrics.jsonl.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from jaxlvlm.eval.plots import save_png
from jaxlvlm.files import PathLike, run_path, write_text_atomic


def _last_per_step(records: Sequence[dict], kind: str) -> list[dict]:
    """One record per step (the last written: a resumed run rewrites steps after its checkpoint)."""
    by_step: dict[int, dict] = {}
    for r in records:
        if r.get("kind", "train") == kind:
            by_step[int(r["step"])] = r
    return [by_step[s] for s in sorted(by_step)]


def plot_loss(records: Sequence[dict], path: PathLike) -> bool:
    """Writes the loss curve; returns False when there is nothing to plot."""
    train = _last_per_step(records, "train")
    if not train:
        return False
    import matplotlib  # matplotlib: heavy, only when a report draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: heavy, only when a report draws

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in train]
    ax.plot(steps, [r["loss"] for r in train], label="loss (weighted)", color="black", lw=2)
    tasks = sorted({t for r in train for t in (r.get("task_loss") or {})})
    for task in tasks:
        pts = [
            (r["step"], r["task_loss"][task])
            for r in train
            if r.get("task_tokens", {}).get(task, 0) > 0
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=task, lw=1, alpha=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("token NLL")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)
    return True


def plot_scores(
    scores: dict[str, float], path: PathLike, chance: dict[str, float] | None = None
) -> bool:
    if not scores:
        return False
    import matplotlib  # matplotlib: heavy, only when a report draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: heavy, only when a report draws

    names = sorted(scores)
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(names) + 2), 4))
    ax.bar(names, [scores[n] for n in names], color="tab:blue", label="score")
    if chance:
        xs = [i for i, n in enumerate(names) if n in chance]
        ax.scatter(
            xs,
            [chance[names[i]] for i in xs],
            color="tab:red",
            marker="_",
            s=400,
            label="chance",
            zorder=3,
        )
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    return True


def write_report(
    workdir: PathLike,
    records: Sequence[dict],
    scores: dict[str, float] | None,
    *,
    title: str = "jaxlvlm run",
    chance: dict[str, float] | None = None,
    details: dict[str, Any] | None = None,
) -> str:
    """Writes report.md (+ loss.png, scores.png) into ``workdir``; returns the report path.

    scores: {task: score in [0, 1]}; chance: optional {task: chance-level score}; details: extra
    key/value lines (run time, steps, model size, ...).
    """
    workdir = run_path(workdir)
    lines = [f"# {title}", ""]
    for k, v in (details or {}).items():
        lines.append(f"- **{k}**: {v}")
    if details:
        lines.append("")
    train = _last_per_step(records, "train")
    if train:
        first, last = train[0], train[-1]
        lines += [
            "## Training",
            "",
            f"Steps {first['step']}..{last['step']}; loss {first['loss']:.4f} -> {last['loss']:.4f}.",
            "",
        ]
        if plot_loss(records, workdir / "loss.png"):
            lines += ["![loss](loss.png)", ""]
    lines += ["## Per-task scores", ""]
    if scores:
        has_chance = bool(chance)
        header = "| task | score |" + (" chance |" if has_chance else "")
        lines += [header, "|---|---|" + ("---|" if has_chance else "")]
        for task in sorted(scores):
            row = f"| {task} | {scores[task]:.3f} |"
            if has_chance:
                c = chance.get(task)
                row += f" {c:.3f} |" if c is not None else " |"
            lines.append(row)
        mean = sum(scores.values()) / len(scores)
        lines += ["", f"Mean over {len(scores)} tasks: {mean:.3f}", ""]
        if plot_scores(scores, workdir / "scores.png", chance):
            lines += ["![scores](scores.png)", ""]
    else:
        lines += ["No evaluation was run.", ""]
    evals = _last_per_step(records, "eval")
    if len(evals) > 1:
        lines += ["## Evaluations during training", ""]
        tasks = sorted({k for r in evals for k in r if k not in ("step", "kind")})
        lines += ["| step | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
        for r in evals:
            vals = [f"{r[t]:.3f}" if isinstance(r.get(t), int | float) else "" for t in tasks]
            lines.append(f"| {r['step']} | " + " | ".join(vals) + " |")
        lines.append("")
    path = workdir / "report.md"
    write_text_atomic(path, "\n".join(lines), what="report")
    return os.fspath(path)
