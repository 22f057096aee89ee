"""The multi-task run's report: report.md, summary.json, the weights and contribution plots."""

from __future__ import annotations

import os

import jax
import numpy as np

from jaxlvlm.eval import plots
from jaxlvlm.files import PathLike, run_path, write_json_atomic, write_text_atomic


def write_multitask_report(workdir: PathLike, task_names: list[str], s: dict) -> str | None:
    """report.md + summary.json + weights.png (+ contribution.png) in the workdir (process 0)."""
    if jax.process_index() != 0:
        return None
    write_json_atomic(run_path(workdir) / "summary.json", s, what="summary")
    lines = ["# jaxlvlm: multi-task instruction tuning with task weighting", ""]
    lines += ["## Per-task scores (0-100, test split)", ""] + _scores_table(task_names, s) + [""]
    if "stl" in s and s["runs"]:
        exposure = "stl_exposure" in s
        lines += [
            "## Improvement and imbalance vs single-task models (docs/methods.md section 5.1)",
            "",
        ]
        header = ["weighting", "dI %", "dE %"]
        header += ["dI % (equal exposure)", "dE % (equal exposure)"] * exposure + ["wall s"]
        rows = [
            [n, r["delta_I"], r["delta_E"]]
            + ([r["delta_I_exposure"], r["delta_E_exposure"]] if exposure else [])
            + [r["wall_s"]]
            for n, r in s["runs"].items()
        ]
        lines += plots.markdown_table(header, rows) + [""]
    if s["runs"]:
        weights = {n: r["last_weights"] for n, r in s["runs"].items()}
        png = plots.plot_weights(weights, task_names, run_path(workdir) / "weights.png")
        lines += [
            "## Task weights (CoTBal: static; others: the last step's)",
            "",
            f"![weights]({png})",
            "",
        ]
    if s.get("cotbal"):
        lines += _cotbal_section(workdir, task_names, s["cotbal"])
    path = run_path(workdir) / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n", what="report")
    return os.fspath(path)


def _scores_table(task_names: list[str], s: dict) -> list[str]:
    refs = [k for k in ("stl", "stl_exposure") if k in s]
    names = {"stl": "STL", "stl_exposure": "STL (equal exposure)"}
    columns = [s[k] for k in refs] + [r["scores"] for r in s["runs"].values()]
    header = ["task"] + [names[k] for k in refs] + list(s["runs"])
    rows = [[t] + [c[i] for c in columns] for i, t in enumerate(task_names)]
    rows.append(["mean"] + [float(np.mean(c)) for c in columns])
    return plots.markdown_table(header, rows)


def _cotbal_section(workdir: PathLike, task_names: list[str], cb: dict) -> list[str]:
    lines = ["## CoTBal", "", f"Inputs: {cb['source']}", ""]
    if "tau" in cb:
        lines += [f"Temperature tau = {float(cb['tau']):.4g}", ""]
    lines += [f"- {line}" for line in cb.get("fallbacks", [])] + [""] * bool(cb.get("fallbacks"))
    rows = [
        [t, cb["c_out"][i], cb["c_in"][i], cb["D"][i], cb["lam"][i]]
        for i, t in enumerate(task_names)
    ]
    lines += plots.markdown_table(["task", "c_out", "c_in", "D", "lambda"], rows) + [""]
    if "C" in cb:
        path = run_path(workdir) / "contribution.png"
        axes = ("probe task i", "helped task j")
        lines += plots.task_matrix_lines(
            np.asarray(cb["C"]), task_names, path, "contribution C[i, j]", axes
        )
    if "probe_steps" in cb:
        trained = {k: v for k, v in cb["probe_steps"].items() if k != "max_steps"}
        lines += [
            f"Probe steps (early stop on the validation score, at most "
            f"{cb['probe_steps']['max_steps']}): "
            + ", ".join(f"{k} {v}" for k, v in trained.items()),
            "",
        ]
    if "probe_wall_s" in cb:
        lines += [
            f"Probe phase: {cb['probe_wall_s']:.1f} s in total (training + validation), "
            f"{cb['probe_cost_vs_final']:.2f}x the wall time of the final CoTBal run; "
            f"{cb.get('probe_steps_vs_final', float('nan')):.2f}x its training steps.",
            "",
        ]
    return lines
