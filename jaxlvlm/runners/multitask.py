"""mode 'multitask': multi-task visual instruction tuning with a task weighting
(docs/methods.md section 1).

Every weighting (EW, TLA, DWA, RLW, CoTBal) enters the token-level weighted loss (6) through the
train state's method_state['task_weights'] (jaxlvlm.methods.multitask.hooks), so the weights are in
every checkpoint. CoTBal's weights come from a file (method.cotbal_file: V/v0 or c_out/c_in/D) or
from the probe phase: the mini model and one probe per task (jaxlvlm.methods.multitask.probes), each
a phase evaluated on the validation sources; V and v0 are saved to probe_scores.json, which a later
run can pass as cotbal_file. Settings: jaxlvlm.methods.multitask.settings.

Layout of the workdir: probes/mini, probes/<task>, stl/<task>, final_<weighting>/, report.md.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np

from jaxlvlm.eval import plots
from jaxlvlm.eval.continual_metrics import delta_I_E
from jaxlvlm.files import (
    PathLike,
    makedirs,
    read_json,
    run_path,
    safe_name,
    write_json_atomic,
    write_text_atomic,
)
from jaxlvlm.methods import cotbal
from jaxlvlm.methods import task_weighting as tw
from jaxlvlm.methods.cotbal_probes import probe_step_cap
from jaxlvlm.methods.multitask.cotbal_inputs import cotbal_weights_from_file, write_cotbal_inputs
from jaxlvlm.methods.multitask.hooks import weighting_hooks
from jaxlvlm.methods.multitask.probes import (
    probe_early_stop,
    probe_plan,
    task_source_specs,
    validation_sources,
)
from jaxlvlm.methods.multitask.settings import MultitaskSettings
from jaxlvlm.methods.settings import settings_from
from jaxlvlm.runners.registry import register_runner
from jaxlvlm.train.phase import run_phase, scores_vector
from jaxlvlm.train.phase_config import phase_config
from jaxlvlm.train.run_setup import task_names_from


def _phase(config, workdir, sources, eval_sources, steps, task_names, **kw):
    c = phase_config(config, sources, steps, task_names, eval_sources=eval_sources)
    return run_phase(c, workdir, **kw)


def probe_phase(config, workdir: PathLike, task_names: list[str], s: MultitaskSettings) -> dict:
    """Trains and evaluates the mini model and one probe per task; returns V, v0, the steps each
    probe trained, timings. probe_steps > 0: fixed steps; 0: the guidance's stopping rule."""
    val = validation_sources(config, s)
    ps = s.probe_settings()
    fixed = s.probe_steps > 0
    cap = s.probe_steps if fixed else probe_step_cap(config.train.steps, ps)
    scores, wall, steps = {}, {}, {}
    for name, sources in probe_plan(config, task_names, s).items():
        c = phase_config(config, sources, cap, task_names, eval_sources=val)
        stop = None
        if not fixed:
            c.train.eval_every = ps.eval_every
            stop = probe_early_stop(name, task_names, s, config.train.steps)
        probe_dir = run_path(workdir) / "probes" / safe_name(name)
        res = run_phase(c, probe_dir, need_state=False, early_stop=stop)
        scores[name], wall[name], steps[name] = (
            scores_vector(res.scores, task_names),
            res.wall_s,
            res.steps,
        )
        logging.info(
            "probe %s (%d of at most %d steps): %s", name, res.steps, cap,
            dict(zip(task_names, scores[name].round(1), strict=True)),
        )  # fmt: skip
    # A fixed-weight task has no probe: its row of V is undefined (NaN), and CoTBal leaves it out.
    nan = np.full(len(task_names), np.nan)
    V = np.stack([scores.get(t, nan) for t in task_names])
    out = {"V": V, "v0": scores["mini"], "wall_s": wall, "steps": steps, "early_stop": not fixed}
    out["max_steps"] = cap
    return out


def cotbal_task_weights(
    config, workdir: PathLike, task_names: list[str], s: MultitaskSettings
) -> dict:
    """CoTBal weights from method.cotbal_file or from the probe phase (saved for reuse)."""
    balanced = np.asarray([t not in set(s.unbalanced) for t in task_names])
    alphas = tuple(float(a) for a in s.alphas)
    if s.cotbal_file:
        res = cotbal_weights_from_file(s.cotbal_file, task_names, s.tau, alphas)
        return {**res, "source": s.cotbal_file}
    probes = probe_phase(config, workdir, task_names, s)
    path = run_path(workdir) / "probe_scores.json"
    if jax.process_index() == 0:
        write_cotbal_inputs(path, task_names, probes["V"], probes["v0"], balanced)
    res = cotbal.weights_from_scores(probes["V"], probes["v0"], s.tau, alphas, balanced=balanced)
    out: dict[str, Any] = {k: np.asarray(v) for k, v in res.items()}
    out.update(source=path, V=probes["V"], v0=probes["v0"], probe_wall_s=probes["wall_s"])
    out["probe_steps_total"] = sum(probes["steps"].values())
    if probes["early_stop"]:
        out["probe_steps"] = {**probes["steps"], "max_steps": probes["max_steps"]}
    out["fallbacks"] = cotbal.fallback_lines(res, task_names)
    for line in out["fallbacks"]:
        logging.warning("%s", line)
    return out


def stl_scores(config, workdir: PathLike, task_names: list[str], s: MultitaskSettings):
    """Single-task reference scores [T] (0-100) from stl_file or STL runs (or None), and seconds."""
    if s.stl_file:
        scores = read_json(s.stl_file)
        if scores is None:
            raise FileNotFoundError(
                f"config.method.stl_file={s.stl_file!r} does not exist; give the path of an STL "
                "run's scores JSON, or leave it empty to train the single-task references"
            )
        return scores_vector(scores, task_names), 0.0
    if s.stl_steps < 0:
        return None, 0.0
    specs = task_source_specs(config, task_names)
    steps = s.stl_steps or config.train.steps
    out, wall = [], 0.0
    for t in task_names:
        evals = [x for x in config.data.eval_sources if dict(x).get("task") == t]
        stl_dir = run_path(workdir) / "stl" / safe_name(t)
        evals = evals or config.data.eval_sources
        res = _phase(config, stl_dir, specs[t], evals, steps, task_names, need_state=False)
        out.append(100.0 * res.scores[t])
        wall += res.wall_s
    return np.asarray(out), wall


@register_runner("multitask", settings=MultitaskSettings)
def run_multitask(config, workdir: PathLike) -> dict:
    """Runs the probe phase if needed, STL references if asked, then one final run per weighting;
    writes report.md with the per-task table, dI% / dE%, weight and contribution plots."""
    s = settings_from(MultitaskSettings, config.method)
    task_names = list(task_names_from(config.data))
    T = len(task_names)
    if T < 2:
        raise ValueError(f"mode 'multitask' needs at least 2 tasks, got {task_names}")
    makedirs(workdir)
    cb = cotbal_task_weights(config, workdir, task_names, s) if "cotbal" in s.weightings else None
    stl, stl_wall = stl_scores(config, workdir, task_names, s)
    finals: dict[str, Any] = {}
    for name in s.weightings:
        wcfg = tw.WeightingConfig(name, T, s.dwa_window, float(s.dwa_temperature), int(s.rlw_seed))
        hooks = weighting_hooks(wcfg, cb["lam"] if name == "cotbal" else None)
        final_dir = run_path(workdir) / f"final_{name}"
        res = _phase(
            config, final_dir, config.data.sources, config.data.eval_sources,
            config.train.steps, task_names, hooks=hooks,
        )  # fmt: skip
        finals[name] = {
            "scores": scores_vector(res.scores, task_names),
            "wall_s": res.wall_s,
            "last_weights": np.asarray(jax.device_get(res.state.method_state["task_weights"])),
        }
    summary = _summary(task_names, finals, stl, cb, stl_wall)
    if cb is not None and "probe_steps_total" in cb:
        summary["cotbal"]["probe_steps_vs_final"] = cb["probe_steps_total"] / config.train.steps
    return {"summary": summary, "report": write_multitask_report(workdir, task_names, summary)}


def _summary(task_names, finals, stl, cb, stl_wall) -> dict[str, Any]:
    out: dict[str, Any] = {"tasks": task_names, "runs": {}}
    for name, f in finals.items():
        row = {
            "scores": f["scores"].tolist(),
            "wall_s": f["wall_s"],
            "last_weights": f["last_weights"].tolist(),
        }
        if stl is not None:
            d = delta_I_E(f["scores"], stl)
            row.update(
                delta_I=float(d["delta_I"]),
                delta_E=float(d["delta_E"]),
                I=np.asarray(d["I"]).tolist(),
            )
        out["runs"][name] = row
    if stl is not None:
        out["stl"], out["stl_wall_s"] = stl.tolist(), stl_wall
    if cb is not None:
        out["cotbal"] = _cotbal_summary(cb, finals)
    return out


def _cotbal_summary(cb: dict, finals: dict) -> dict:
    keys = ("lam", "C", "c_out", "c_in", "D", "V", "v0", "tau", "probe_steps")
    out = {k: _plain(v) for k, v in cb.items() if k in keys}
    out["source"] = cb["source"]
    out["fallbacks"] = cb.get("fallbacks", [])
    if "probe_wall_s" in cb:
        probe_total = float(sum(cb["probe_wall_s"].values()))
        final = finals.get("cotbal", next(iter(finals.values())))["wall_s"]
        out["probe_wall_s"] = probe_total
        out["probe_cost_vs_final"] = probe_total / max(final, 1e-9)
    return out


def _plain(v):
    return v if isinstance(v, dict) else np.asarray(v).tolist()


def write_multitask_report(workdir: PathLike, task_names: list[str], s: dict) -> str | None:
    """report.md + summary.json + weights.png (+ contribution.png) in the workdir (process 0)."""
    if jax.process_index() != 0:
        return None
    write_json_atomic(run_path(workdir) / "summary.json", s, what="summary")
    lines = ["# jaxlvlm: multi-task instruction tuning with task weighting", ""]
    lines += ["## Per-task scores (0-100, test split)", ""] + _scores_table(task_names, s) + [""]
    if "stl" in s:
        lines += [
            "## Improvement and imbalance vs single-task models (docs/methods.md section 5.1)",
            "",
        ]
        rows = [[n, r["delta_I"], r["delta_E"], r["wall_s"]] for n, r in s["runs"].items()]
        lines += plots.markdown_table(["weighting", "dI %", "dE %", "wall s"], rows) + [""]
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
    header = ["task"] + (["STL"] if "stl" in s else []) + list(s["runs"])
    rows = [
        [t] + ([s["stl"][i]] if "stl" in s else []) + [r["scores"][i] for r in s["runs"].values()]
        for i, t in enumerate(task_names)
    ]
    rows.append(
        ["mean"]
        + ([float(np.mean(s["stl"]))] if "stl" in s else [])
        + [float(np.mean(r["scores"])) for r in s["runs"].values()]
    )
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
