"""mode 'multitask': multi-task visual instruction tuning with a task weighting (METHODS.md 1).

Every weighting (EW, TLA, DWA, RLW, CoTBal) enters the token-level weighted loss (6) through the
train state's method_state['task_weights'], so the weights are in every checkpoint. CoTBal's weights
come from a file (config.method.cotbal_file: V/v0 or c_out/c_in/D) or from the probe phase run here:
the mini model (every task at mini_rate) and one probe per task (that task at large_rate + the others
at mini_rate), each a resumable phase evaluated on the validation sources; V and v0 are saved to
probe_scores.json, which a later run can pass as cotbal_file to skip the probes.

config.method keys (defaults in METHOD_DEFAULTS):
  weightings      names run one after the other on the same data, budget and seed (final runs)
  tau, alphas     CoTBal temperature and mix (eqs. 4-5)
  cotbal_file     '' = run the probe phase
  probe_steps     steps of each probe (0 = train.steps); mini_rate, large_rate: data fractions
  val_sources     validation specs for the probes (() = eval sources with split 'val')
  unbalanced      task names with a fixed weight 1 (text-only tasks, METHODS 1(c))
  dwa_window, dwa_temperature, rlw_seed
  stl_steps       > 0: train one single-task model per task (the STL reference of dI/dE); 0 = train.steps;
                  -1 = none (use stl_file, or report no dI/dE)
  stl_file        JSON {task: score in [0, 1]} of single-task models

Layout of the workdir: probes/mini, probes/<task>, stl/<task>, final_<weighting>/, report.md.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxlvlm.data import batch as B
from jaxlvlm.eval.continual_metrics import delta_I_E
from jaxlvlm.methods import cotbal
from jaxlvlm.methods import task_weighting as tw
from jaxlvlm.runners import _plots
from jaxlvlm.runners._cotbal_inputs import cotbal_weights_from_file, write_cotbal_inputs
from jaxlvlm.runners._phase import run_phase, scores_vector
from jaxlvlm.runners.registry import register_runner
from jaxlvlm.train.trainer import task_names_from

METHOD_DEFAULTS: dict[str, Any] = dict(
    weightings=("cotbal",),
    tau=0.5,
    alphas=(0.25, 0.25, 0.5),
    cotbal_file="",
    probe_steps=0,
    mini_rate=1 / 32,
    large_rate=1.0,
    val_sources=(),
    unbalanced=(),
    dwa_window=25,
    dwa_temperature=2.0,
    rlw_seed=0,
    stl_steps=-1,
    stl_file="",
)


def method_settings(config) -> dict[str, Any]:
    """config.method merged over METHOD_DEFAULTS; unknown keys and bad values raise, naming them."""
    given = config.method.to_dict() if hasattr(config.method, "to_dict") else dict(config.method)
    unknown = sorted(set(given) - set(METHOD_DEFAULTS))
    if unknown:
        raise ValueError(
            f"config.method: unknown keys {unknown} for mode 'multitask'; known: {sorted(METHOD_DEFAULTS)}"
        )
    m = {**METHOD_DEFAULTS, **given}
    m["weightings"] = tuple(m["weightings"])
    bad = [w for w in m["weightings"] if w not in tw.WEIGHTINGS]
    if bad or not m["weightings"]:
        raise ValueError(
            f"config.method.weightings={m['weightings']}: choose from {tw.WEIGHTINGS} (at least one)"
        )
    if not (0 < m["mini_rate"] <= m["large_rate"] <= 1):
        raise ValueError(
            f"config.method: need 0 < mini_rate <= large_rate <= 1, got {m['mini_rate']}, {m['large_rate']}"
        )
    return m


def _task_specs(config, task_names: Sequence[str]) -> dict[str, list[dict]]:
    specs: dict[str, list[dict]] = {t: [] for t in task_names}
    for s in config.data.sources:
        s = dict(s)
        if not s.get("task"):
            raise ValueError(f"mode 'multitask' needs a 'task' key on every data source spec: {s}")
        if s["task"] not in specs:
            raise ValueError(
                f"data source task {s['task']!r} is not in data.tasks {list(task_names)}"
            )
        specs[s["task"]].append(s)
    return specs


def _scaled(spec: dict, rate: float, what: str) -> dict:
    if "num" not in spec:
        raise ValueError(
            f"the CoTBal probe phase subsamples sources by their 'num'; {what} spec {spec} has none "
            "(give 'num', or pass config.method.cotbal_file to skip the probes)"
        )
    return dict(spec, num=max(1, int(round(int(spec["num"]) * rate))))


def _phase_config(config, sources, eval_sources, steps: int, tasks: Sequence[str]):
    c = copy.deepcopy(config)
    with c.unlocked():
        c.data.sources = tuple(sources)
        c.data.eval_sources = tuple(eval_sources)
        c.data.tasks = tuple(tasks)
        c.train.steps = int(steps)
        c.train.eval_every = 0
        c.method = type(c.method)()
    return c


def _val_sources(config, m) -> tuple:
    if m["val_sources"]:
        return tuple(dict(s) for s in m["val_sources"])
    out = []
    for s in config.data.eval_sources or config.data.sources:
        s = dict(s)
        if s.get("type") == "builtin":
            s["split"] = "val"
        out.append(s)
    return tuple(out)


def probe_phase(config, workdir: str, task_names: list[str], m: dict) -> dict[str, Any]:
    """Trains and evaluates the mini model and one probe per task; returns V, v0, timings."""
    specs = _task_specs(config, task_names)
    val = _val_sources(config, m)
    steps = m["probe_steps"] or config.train.steps
    mini = [_scaled(s, m["mini_rate"], t) for t in task_names for s in specs[t]]
    runs = {"mini": mini}
    for t in task_names:
        large = [_scaled(s, m["large_rate"], t) for s in specs[t]]
        runs[t] = large + [
            _scaled(s, m["mini_rate"], o) for o in task_names if o != t for s in specs[o]
        ]
    scores, wall = {}, {}
    for name, sources in runs.items():
        c = _phase_config(config, sources, val, steps, task_names)
        res = run_phase(c, os.path.join(workdir, "probes", _safe(name)), need_state=False)
        scores[name] = scores_vector(res.scores, task_names)
        wall[name] = res.wall_s
        logging.info(
            "probe %s: %s", name, dict(zip(task_names, scores[name].round(1), strict=True))
        )
    V = np.stack([scores[t] for t in task_names])
    return {"V": V, "v0": scores["mini"], "wall_s": wall, "steps": steps}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def cotbal_task_weights(config, workdir: str, task_names: list[str], m: dict) -> dict[str, Any]:
    """CoTBal weights from config.method.cotbal_file or from the probe phase (saved for reuse)."""
    balanced = np.asarray([t not in set(m["unbalanced"]) for t in task_names])
    alphas = tuple(float(a) for a in m["alphas"])
    if m["cotbal_file"]:
        res = cotbal_weights_from_file(m["cotbal_file"], task_names, m["tau"], alphas)
        res["source"] = m["cotbal_file"]
        return res
    probes = probe_phase(config, workdir, task_names, m)
    path = os.path.join(workdir, "probe_scores.json")
    if jax.process_index() == 0:
        write_cotbal_inputs(path, task_names, probes["V"], probes["v0"])
    res = cotbal.weights_from_scores(probes["V"], probes["v0"], m["tau"], alphas, balanced=balanced)
    out = {k: np.asarray(v) for k, v in res.items()}
    out.update(source=path, V=probes["V"], v0=probes["v0"], probe_wall_s=probes["wall_s"])
    out["probe_steps_total"] = probes["steps"] * (len(task_names) + 1)
    return out


def _weighting_hooks(wcfg: tw.WeightingConfig):
    def before(ms, batch, step):
        return tw.before_step(wcfg, ms, batch[B.LOSS_MASK], batch[B.TASK_IDS], step)

    def after(state, batch, metrics):
        del batch
        tok = metrics["task_tokens"]
        return tw.after_step(wcfg, state.method_state, metrics["task_loss"] * tok, tok)

    return before, after


def stl_scores(
    config, workdir: str, task_names: list[str], m: dict
) -> tuple[np.ndarray | None, float]:
    """Single-task reference scores [T] (0-100): from stl_file, from STL runs, or None."""
    if m["stl_file"]:
        with open(m["stl_file"]) as f:
            return scores_vector(json.load(f), task_names), 0.0
    if m["stl_steps"] < 0:
        return None, 0.0
    specs = _task_specs(config, task_names)
    steps = m["stl_steps"] or config.train.steps
    out, wall = [], 0.0
    for t in task_names:
        evals = [s for s in config.data.eval_sources if dict(s).get("task") == t]
        c = _phase_config(config, specs[t], evals or config.data.eval_sources, steps, task_names)
        res = run_phase(c, os.path.join(workdir, "stl", _safe(t)), need_state=False)
        out.append(100.0 * res.scores[t])
        wall += res.wall_s
    return np.asarray(out), wall


@register_runner("multitask")
def run_multitask(config, workdir: str) -> dict:
    """Runs the probe phase if needed, STL references if asked, then one final run per weighting;
    writes report.md with the per-task table, dI% / dE%, weight and contribution plots."""
    m = method_settings(config)
    task_names = list(task_names_from(config.data))
    T = len(task_names)
    if T < 2:
        raise ValueError(f"mode 'multitask' needs at least 2 tasks, got {task_names}")
    os.makedirs(workdir, exist_ok=True)
    cb = (
        cotbal_task_weights(config, workdir, task_names, m) if "cotbal" in m["weightings"] else None
    )
    stl, stl_wall = stl_scores(config, workdir, task_names, m)
    finals: dict[str, Any] = {}
    for name in m["weightings"]:
        wcfg = tw.WeightingConfig(
            name, T, m["dwa_window"], float(m["dwa_temperature"]), int(m["rlw_seed"])
        )
        static = cb["lam"] if name == "cotbal" else None
        ms = tw.init_weighting_state(wcfg, static_weights=static)
        before, after = (None, None) if name in ("ew", "cotbal") else _weighting_hooks(wcfg)
        c = _phase_config(
            config, config.data.sources, config.data.eval_sources, config.train.steps, task_names
        )
        res = run_phase(
            c,
            os.path.join(workdir, f"final_{name}"),
            method_state=ms,
            before_step=before,
            after_step=after,
            need_state=True,
        )
        finals[name] = {
            "scores": scores_vector(res.scores, task_names),
            "wall_s": res.wall_s,
            "last_weights": np.asarray(jax.device_get(res.state.method_state["task_weights"])),
        }
    summary = _summary(task_names, finals, stl, cb, stl_wall)
    if cb is not None and "probe_steps_total" in cb:
        summary["cotbal"]["probe_steps_vs_final"] = cb["probe_steps_total"] / config.train.steps
    report = write_multitask_report(workdir, task_names, summary)
    return {"summary": summary, "report": report}


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
        out["stl"] = stl.tolist()
        out["stl_wall_s"] = stl_wall
    if cb is not None:
        out["cotbal"] = {
            k: np.asarray(v).tolist()
            for k, v in cb.items()
            if k in ("lam", "C", "c_out", "c_in", "D", "V", "v0")
        }
        out["cotbal"]["source"] = cb["source"]
        if "probe_wall_s" in cb:
            probe_total = float(sum(cb["probe_wall_s"].values()))
            final = finals.get("cotbal", next(iter(finals.values())))["wall_s"]
            out["cotbal"]["probe_wall_s"] = probe_total
            out["cotbal"]["probe_cost_vs_final"] = probe_total / max(final, 1e-9)
    return out


def write_multitask_report(workdir: str, task_names: list[str], s: dict) -> str | None:
    """report.md + summary.json + weights.png (+ contribution.png) in the workdir (process 0)."""
    if jax.process_index() != 0:
        return None
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(s, f, indent=1)
    lines = ["# jaxlvlm: multi-task instruction tuning with task weighting", ""]
    header = ["task"] + (["STL"] if "stl" in s else []) + list(s["runs"])
    rows = []
    for i, t in enumerate(task_names):
        rows.append(
            [t]
            + ([s["stl"][i]] if "stl" in s else [])
            + [r["scores"][i] for r in s["runs"].values()]
        )
    rows.append(
        ["mean"]
        + ([float(np.mean(s["stl"]))] if "stl" in s else [])
        + [float(np.mean(r["scores"])) for r in s["runs"].values()]
    )
    lines += (
        ["## Per-task scores (0-100, test split)", ""] + _plots.markdown_table(header, rows) + [""]
    )
    if "stl" in s:
        lines += ["## Improvement and imbalance vs single-task models (METHODS 5.1)", ""]
        lines += _plots.markdown_table(
            ["weighting", "dI %", "dE %", "wall s"],
            [[n, r["delta_I"], r["delta_E"], r["wall_s"]] for n, r in s["runs"].items()],
        )
        lines.append("")
    weights = {n: r["last_weights"] for n, r in s["runs"].items()}
    lines += ["## Task weights (CoTBal: static; others: the last step's)", ""]
    lines.append(
        f"![weights]({_plots.plot_weights(weights, task_names, os.path.join(workdir, 'weights.png'))})"
    )
    lines.append("")
    cb = s.get("cotbal")
    if cb:
        lines += ["## CoTBal", "", f"Inputs: {cb['source']}", ""]
        lines += _plots.markdown_table(
            ["task", "c_out", "c_in", "D", "lambda"],
            [
                [t, cb["c_out"][i], cb["c_in"][i], cb["D"][i], cb["lam"][i]]
                for i, t in enumerate(task_names)
            ],
        )
        lines.append("")
        if "C" in cb:
            png = _plots.plot_matrix(
                np.asarray(cb["C"]),
                task_names,
                task_names,
                os.path.join(workdir, "contribution.png"),
                title="contribution C[i, j]",
                xlabel="helped task j",
                ylabel="probe task i",
            )
            lines += [f"![contribution]({png})", ""]
        if "probe_wall_s" in cb:
            lines.append(
                f"Probe phase: {cb['probe_wall_s']:.1f} s in total (training + validation), "
                f"{cb['probe_cost_vs_final']:.2f}x the wall time of the final CoTBal run; "
                f"{cb.get('probe_steps_vs_final', float('nan')):.2f}x its training steps."
            )
            lines.append("")
    path = os.path.join(workdir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path
