"""mode 'multitask': multi-task visual instruction tuning with a task weighting
(docs/methods.md section 1).

Every weighting (EW, TLA, DWA, RLW, CoTBal) enters the token-level weighted loss (6) through the
train state's method_state['task_weights'] (jaxlvlm.methods.multitask.hooks), so the weights are in
every checkpoint. CoTBal's weights come from a file (method.cotbal_file: V/v0 or c_out/c_in/D) or
from the probe phase: the mini model and one probe per task (jaxlvlm.methods.multitask.probes), each
a phase evaluated on the validation sources; V and v0 are saved to probe_scores.json, which a later
run can pass as cotbal_file. Settings: jaxlvlm.methods.multitask.settings.

With method.base_steps > 0 a base model is trained first (jaxlvlm.train.base_model) and every
phase (probes, references, final runs) starts from it; its scores on the tasks are reported.

Layout of the workdir: base/, base_eval/, probes/mini, probes/<task>, stl/<task>,
stl_exposure/<task>, final_<weighting>/, report.md.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np

from jaxlvlm.eval.continual_metrics import delta_I_E
from jaxlvlm.files import (
    PathLike,
    makedirs,
    read_json,
    run_path,
    safe_name,
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
from jaxlvlm.methods.multitask.references import exposure_steps, task_shares
from jaxlvlm.methods.multitask.settings import MultitaskSettings
from jaxlvlm.methods.settings import settings_from
from jaxlvlm.runners.multitask_report import write_multitask_report
from jaxlvlm.runners.registry import register_runner
from jaxlvlm.train.base_model import base_params, base_scores
from jaxlvlm.train.phase import run_phase, scores_vector
from jaxlvlm.train.phase_config import phase_config
from jaxlvlm.train.run_setup import task_names_from


def _phase(config, workdir, sources, eval_sources, steps, task_names, **kw):
    c = phase_config(config, sources, steps, task_names, eval_sources=eval_sources)
    return run_phase(c, workdir, **kw)


def probe_phase(
    config, workdir: PathLike, task_names: list[str], s: MultitaskSettings, params0=None
) -> dict:
    """Trains and evaluates the mini model and one probe per task, each from ``params0`` (None:
    config.init_from or the model's init); returns V, v0, the steps each probe trained, timings.
    probe_steps > 0: fixed steps; 0: the guidance's stopping rule."""
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
        res = run_phase(c, probe_dir, need_state=False, early_stop=stop, init_params=params0)
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


def probe_learn_check(V, v0, task_names: list[str], s: MultitaskSettings) -> dict:
    """{task: {'margin': V[i, i] - v0[i], 'passed': margin >= method.probe_learn_margin}} for every
    balanced task: whether its probe learned it beyond the mini model (scores are 0-100, higher
    better), the condition under which C measures transfer rather than noise (docs/benchmark.md)."""
    out = {}
    for i, t in enumerate(task_names):
        if t in s.unbalanced:
            continue
        margin = float(V[i, i] - v0[i])
        out[t] = {"margin": margin, "passed": bool(margin >= s.probe_learn_margin)}
        if not out[t]["passed"]:
            logging.warning(
                "CoTBal probe check: the probe of %r beats the mini model by %.1f points (< %g)",
                t, margin, s.probe_learn_margin,
            )  # fmt: skip
    return out


def cotbal_task_weights(
    config, workdir: PathLike, task_names: list[str], s: MultitaskSettings, params0=None
) -> dict:
    """CoTBal weights from method.cotbal_file or from the probe phase (saved for reuse)."""
    balanced = np.asarray([t not in set(s.unbalanced) for t in task_names])
    alphas = tuple(float(a) for a in s.alphas)
    if s.cotbal_file:
        res = cotbal_weights_from_file(s.cotbal_file, task_names, s.tau, alphas)
        return {**res, "source": s.cotbal_file}
    probes = probe_phase(config, workdir, task_names, s, params0)
    path = run_path(workdir) / "probe_scores.json"
    if jax.process_index() == 0:
        write_cotbal_inputs(path, task_names, probes["V"], probes["v0"], balanced)
    res = cotbal.weights_from_scores(probes["V"], probes["v0"], s.tau, alphas, balanced=balanced)
    out: dict[str, Any] = {k: np.asarray(v) for k, v in res.items()}
    out.update(
        source=os.fspath(path), V=probes["V"], v0=probes["v0"], probe_wall_s=probes["wall_s"]
    )
    out["probe_steps_total"] = sum(probes["steps"].values())
    if probes["early_stop"]:
        out["probe_steps"] = {**probes["steps"], "max_steps": probes["max_steps"]}
    out["fallbacks"] = cotbal.fallback_lines(res, task_names)
    out["probe_check"] = probe_learn_check(probes["V"], probes["v0"], task_names, s)
    for line in out["fallbacks"]:
        logging.warning("%s", line)
    return out


def stl_scores(
    config, workdir: PathLike, task_names: list[str], s: MultitaskSettings, params0=None
) -> dict:
    """The single-task references: {'stl': [T] scores (0-100) at equal total steps (from stl_file
    or trained; absent when none are asked for), 'stl_exposure': [T] at equal per-task exposure
    (with stl_exposure), '<key>_steps': steps per task, '<key>_wall_s'}."""
    if s.stl_file:
        scores = read_json(s.stl_file)
        if scores is None:
            raise FileNotFoundError(
                f"config.method.stl_file={s.stl_file!r} does not exist; give the path of an STL "
                "run's scores JSON, or leave it empty to train the single-task references"
            )
        return {"stl": scores_vector(scores, task_names), "stl_wall_s": 0.0}
    if s.stl_steps < 0:
        return {}
    steps = s.stl_steps or config.train.steps
    plans = {"stl": [steps] * len(task_names)}
    if s.stl_exposure:
        plans["stl_exposure"] = exposure_steps(config.train.steps, task_shares(config, task_names))
    specs = task_source_specs(config, task_names)
    out: dict[str, Any] = {}
    for key, per_task in plans.items():
        scores, wall = [], 0.0
        for t, n in zip(task_names, per_task, strict=True):
            evals = [x for x in config.data.eval_sources if dict(x).get("task") == t]
            stl_dir = run_path(workdir) / key / safe_name(t)
            evals = evals or config.data.eval_sources
            res = _phase(
                config, stl_dir, specs[t], evals, n, task_names,
                need_state=False, init_params=params0,
            )  # fmt: skip
            scores.append(100.0 * res.scores[t])
            wall += res.wall_s
        out[key], out[f"{key}_steps"], out[f"{key}_wall_s"] = np.asarray(scores), per_task, wall
    return out


def weighting_config(config, s, name: str, num_tasks: int) -> tw.WeightingConfig:
    """The static settings of weighting ``name``; RLW's random stream comes from the run's seed
    unless ``method.rlw_seed`` >= 0 fixes it (so runs of different seeds draw different weights)."""
    rlw_seed = int(config.seed) if s.rlw_seed < 0 else int(s.rlw_seed)
    # Keywords: WeightingConfig's fifth field is dwa_absent_as_zero (a positional seed landed
    # there before 2026-12-01, harmless only while rlw_seed was 0).
    return tw.WeightingConfig(
        name,
        num_tasks,
        dwa_window=s.dwa_window,
        dwa_temperature=float(s.dwa_temperature),
        seed=rlw_seed,
    )


@register_runner("multitask", settings=MultitaskSettings)
def run_multitask(config, workdir: PathLike) -> dict:
    """Trains the base model if asked (method.base_steps), runs the probe phase if needed, the
    single-task references if asked, then one final run per weighting, every one starting from the
    base; writes report.md with the per-task table, dI% / dE%, weight and contribution plots."""
    s = settings_from(MultitaskSettings, config.method)
    task_names = list(task_names_from(config.data))
    T = len(task_names)
    if T < 2:
        raise ValueError(f"mode 'multitask' needs at least 2 tasks, got {task_names}")
    makedirs(workdir)
    params0, b = None, None
    if s.base_steps > 0:  # else every phase starts from config.init_from or the model's init
        params0 = base_params(config, workdir, task_names, s)
        b = base_scores(config, workdir, task_names, params0, s)
    cb = None
    if "cotbal" in s.weightings:
        cb = cotbal_task_weights(config, workdir, task_names, s, params0)
    refs = stl_scores(config, workdir, task_names, s, params0)
    finals: dict[str, Any] = {}
    for name in s.weightings:
        wcfg = weighting_config(config, s, name, T)
        hooks = weighting_hooks(wcfg, cb["lam"] if name == "cotbal" else None)
        final_dir = run_path(workdir) / f"final_{name}"
        res = _phase(
            config, final_dir, config.data.sources, config.data.eval_sources,
            config.train.steps, task_names, hooks=hooks, init_params=params0,
        )  # fmt: skip
        finals[name] = {
            "scores": scores_vector(res.scores, task_names),
            "wall_s": res.wall_s,
            "last_weights": np.asarray(jax.device_get(res.state.method_state["task_weights"])),
        }
    summary = _summary(task_names, finals, refs, cb)
    if cb is not None and "probe_steps_total" in cb:
        summary["cotbal"]["probe_steps_vs_final"] = cb["probe_steps_total"] / config.train.steps
    if b is not None:
        summary["base_scores"] = b.tolist()
    summary["train_steps"] = config.train.steps
    return {"summary": summary, "report": write_multitask_report(workdir, task_names, summary)}


def _summary(task_names, finals, refs: dict, cb) -> dict[str, Any]:
    out: dict[str, Any] = {"tasks": task_names, "runs": {}}
    references = [k for k in ("stl", "stl_exposure") if k in refs]
    for name, f in finals.items():
        row = {
            "scores": f["scores"].tolist(),
            "wall_s": f["wall_s"],
            "last_weights": f["last_weights"].tolist(),
        }
        for key in references:  # 'stl' -> delta_I, delta_E, I; 'stl_exposure' -> delta_I_exposure
            d = delta_I_E(f["scores"], refs[key])
            suffix = key[len("stl") :]
            row[f"delta_I{suffix}"] = float(d["delta_I"])
            row[f"delta_E{suffix}"] = float(d["delta_E"])
            row[f"I{suffix}"] = np.asarray(d["I"]).tolist()
        out["runs"][name] = row
    for key, v in refs.items():
        out[key] = v.tolist() if isinstance(v, np.ndarray) else v
    if cb is not None:
        out["cotbal"] = _cotbal_summary(cb, finals)
    return out


def _cotbal_summary(cb: dict, finals: dict) -> dict:
    keys = ("lam", "C", "c_out", "c_in", "D", "V", "v0", "tau", "probe_steps", "probe_check")
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
