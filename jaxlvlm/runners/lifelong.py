"""mode 'lifelong': Adapt-inf (docs/methods.md section 3) over a stream of datasets joining a
growing pool.

At time step t the datasets of config.method.stream[t] join the pool; the selection pipeline
(jaxlvlm.methods.adapt_inf.pipeline) chooses ``budget`` samples with the current model; a phase
trains on them (LoRA + connector); the pool is pruned to its capacity; every task of the stream is
evaluated (a row of the accuracy matrix). Each step is a phase (workdir/step_<t>/) whose selection
and pool state are saved next to it, so a rerun resumes at the step where it stopped.

config.method.approach (settings: jaxlvlm.methods.adapt_inf.settings):
  adapt_inf   gradient clusters, scorer per cluster by histogram entropy, CCS, SemDeDup pruning
  random      uniform random selection of the same budget, random pruning to the same capacity
  scorer      one scorer (method.scorer) everywhere, cluster budgets + CCS, random pruning
  all         no selection: the whole pool every step, no pruning
  sequential  no pool: a random budget-sized subset of the new datasets only
  joint       one multi-task run on all data of the stream (the reference for relative gain)
"""

from __future__ import annotations

import io
import logging
import math
import os

import jax
import numpy as np

from jaxlvlm.eval import plots
from jaxlvlm.eval.continual_metrics import final_row_summary, relative_gain
from jaxlvlm.files import (
    PathLike,
    makedirs,
    read_json,
    run_path,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from jaxlvlm.methods.adapt_inf import pipeline as PL
from jaxlvlm.methods.adapt_inf.cluster_report import format_task_cluster_table
from jaxlvlm.methods.adapt_inf.settings import LifelongSettings
from jaxlvlm.methods.settings import settings_from
from jaxlvlm.runners.registry import register_runner
from jaxlvlm.train import run_setup as RS
from jaxlvlm.train.base_model import base_params, base_scores
from jaxlvlm.train.phase import MethodHooks, run_phase, scores_vector
from jaxlvlm.train.phase_config import phase_config, task_specs


@register_runner("lifelong", settings=LifelongSettings)
def run_lifelong(config, workdir: PathLike) -> dict:
    """Runs the stream (resuming step by step) and writes report.md / summary.json."""
    s = settings_from(LifelongSettings, config.method)
    tasks = s.tasks
    makedirs(workdir)
    params0 = base_params(config, workdir, tasks, s)
    b = base_scores(config, workdir, tasks, params0, s)
    if s.approach == "joint":
        summary = _joint(config, workdir, tasks, params0, b, s)
    else:
        summary = _stream(config, workdir, tasks, params0, b, s)
    return {"summary": summary, "report": write_lifelong_report(workdir, summary)}


def _stream(config, workdir, tasks, params0, b, s: LifelongSettings) -> dict:
    pool = PL.PoolState.empty()
    a = np.full((len(s.stream), len(tasks)), np.nan)
    # One projection for the whole stream, carried in every step's method state (checkpointed).
    carried = {"params": params0, "lora": None, "projection_key": PL.projection_key(s)}
    wall, log = 0.0, []
    for t, step_tasks in enumerate(s.stream):
        step_dir = run_path(workdir) / f"step_{t}"
        makedirs(step_dir)
        c = phase_config(
            config, task_specs(config, step_tasks[0]), 1, tasks, freeze=PL.FROZEN, lora=True
        )
        run = RS.prepare_run(c, step_dir)
        new_idx = pool.add_step_data(config, step_tasks, tasks, run.image_cfg.image_size)
        alive_idx = np.flatnonzero(pool.alive)
        sel = _selection(config, run, step_dir, pool, alive_idx, new_idx, t, carried, s)
        res = _train_step(config, step_dir, tasks, pool, sel["selected"], carried, s, step_tasks)
        a[t] = scores_vector(res.scores, tasks)
        wall += res.wall_s
        pool.alive[:] = False
        pool.alive[sel["alive_after"]] = True
        log.append(_step_log(t, step_tasks, tasks, pool, alive_idx, sel, res))
        logging.info("lifelong step %d: %s", t, log[-1])
    return _summary(s, tasks, a, b, wall, log)


def _selection(config, run, step_dir, pool, alive_idx, new_idx, t, carried, s) -> dict:
    """This step's selection and pruning: read back when saved, else computed and saved."""
    path = run_path(step_dir) / "selection.npz"
    if path.exists():
        saved = np.load(io.BytesIO(path.read_bytes()))
        info = read_json(run_path(step_dir) / "selection.json")
        return {"selected": saved["selected"], "alive_after": saved["alive_after"], "info": info}
    u = scores = task_ids = None
    skipped = 0
    if s.approach in ("adapt_inf", "scorer"):
        lora = (
            carried["lora"] if carried["lora"] is not None else PL.fresh_lora(config, run.model_cfg)
        )
        u, scores, seen = PL.pool_features(
            run, carried["params"], lora, alive_idx, pool.pool, s, config.lora.alpha,
            carried["projection_key"],
        )  # fmt: skip
        alive_idx, skipped = alive_idx[seen], int((~seen).sum())
        task_ids = np.asarray([pool.pool.task_id_of(g) for g in alive_idx])
    seed = config.seed + 200 + t
    selected, labels, info = PL.select_step(
        s, u, scores, alive_idx, new_idx, seed, task_ids, len(s.tasks)
    )
    alive_after = PL.prune_step(s, u, labels, alive_idx, config.seed + 300 + t)
    info["skipped_bad_samples"] = skipped
    if jax.process_index() == 0:
        buffer = io.BytesIO()
        np.savez(buffer, selected=selected, alive_after=alive_after)
        write_bytes_atomic(path, buffer.getvalue(), what="selection")
        write_json_atomic(run_path(step_dir) / "selection.json", info, what="selection")
    return {"selected": selected, "alive_after": alive_after, "info": info}


def _train_step(config, step_dir, tasks, pool, selected, carried, s, step_tasks):
    """The step's phase on the selection; updates ``carried`` (params, LoRA, projection key)."""
    steps = max(1, math.ceil(s.epochs * len(selected) / config.data.global_batch_size))
    c = phase_config(
        config, task_specs(config, step_tasks[0]), steps, tasks, freeze=PL.FROZEN, lora=True
    )
    lora = carried["lora"]
    hooks = MethodHooks(
        lora_init=(lambda r, lo=lora: lo) if lora is not None else None,
        method_state={"projection_key": carried["projection_key"]},
    )
    res = run_phase(
        c,
        step_dir,
        init_params=carried["params"],
        hooks=hooks,
        train_sources=[pool.pool.subset(np.sort(selected))],
    )
    carried.update(
        params=res.state.params,
        lora=res.state.lora,
        projection_key=np.asarray(jax.device_get(res.state.method_state["projection_key"])),
    )
    return res


def _step_log(t, step_tasks, tasks, pool, alive_idx, sel, res) -> dict:
    def per_task(rows):
        ids = np.bincount([pool.pool.task_id_of(g) for g in rows], minlength=len(tasks))
        return dict(zip(tasks, ids.tolist(), strict=True))

    selected = sel["selected"]
    return {
        "step": t,
        "new": list(step_tasks),
        "pool_before": int(len(alive_idx)),
        "selected": int(len(selected)),
        "train_steps": res.steps,
        "pool_after": int(len(sel["alive_after"])),
        "selected_per_task": per_task(selected),
        # What the pruning kept of each task (duplicates that survive, the rare task's share).
        "pool_after_per_task": per_task(sel["alive_after"]),
        **sel["info"],
    }


def _joint(config, workdir, tasks, params0, b, s: LifelongSettings) -> dict:
    sources = [x for t in tasks for x in task_specs(config, t)]
    total = sum(int(dict(x).get("num", 0)) for x in sources)
    steps = max(1, math.ceil(s.epochs * total / config.data.global_batch_size))
    c = phase_config(config, sources, steps, tasks, freeze=PL.FROZEN, lora=True)
    res = run_phase(c, run_path(workdir) / "joint", init_params=params0, need_state=False)
    final = scores_vector(res.scores, tasks)
    return final_row_summary(tasks, final, b, res.wall_s, train_steps=steps)


def _summary(s: LifelongSettings, tasks, a, b, wall, log) -> dict:
    appear = np.asarray([next(i for i, st in enumerate(s.stream) if t in st) for t in tasks])
    metrics = PL.lifelong_metrics(a, appear)
    joint = read_json(s.joint_summary) if s.joint_summary else None
    if joint is not None:
        ref = np.asarray(joint["final"])
        # A task the joint model scores 0 on has no defined ratio: RG is over the others.
        scored = ref > 0
        if scored.any():
            metrics["RG"] = float(relative_gain(a[-1][scored], ref[scored]))
            metrics["RG_tasks"] = int(scored.sum())
    return {
        "approach": s.approach,
        "tasks": tasks,
        "stream": [list(st) for st in s.stream],
        "matrix": a.tolist(),
        "base": None if b is None else np.asarray(b).tolist(),
        "metrics": metrics,
        "budget": s.budget,
        "capacity": s.pool_capacity,
        "steps": log,
        "wall_s": wall,
    }


def write_lifelong_report(workdir: PathLike, s: dict) -> str | None:
    """report.md + summary.json in the workdir (process 0)."""
    if jax.process_index() != 0:
        return None
    write_json_atomic(run_path(workdir) / "summary.json", s, what="summary")
    lines = [f"# jaxlvlm: lifelong instruction tuning ({s['approach']})", ""]
    if "matrix" in s:
        lines += _stream_section(s)
    else:
        lines += plots.markdown_table(["", *s["tasks"], "ACC"], [["joint", *s["final"], s["ACC"]]])
    lines += ["", f"Training + evaluation time: {s['wall_s']:.1f} s", ""]
    path = run_path(workdir) / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n", what="report")
    return os.fspath(path)


def _stream_section(s: dict) -> list[str]:
    lines = [f"Budget {s['budget']} samples per step, pool capacity {s['capacity']}.", ""]
    lines += plots.markdown_table(list(s["metrics"]), [list(s["metrics"].values())]) + [""]
    lines += ["## Scores after each step (0-100)", ""]
    rows = [[i, *row] for i, row in enumerate(s["matrix"])]
    lines += plots.markdown_table(["after step", *s["tasks"]], rows) + [""]
    lines += ["## Steps", ""]
    for st in s["steps"]:
        lines.append(
            f"- step {st['step']} (+{', '.join(st['new'])}): pool {st['pool_before']} -> trained on "
            f"{st['selected']} ({st['train_steps']} steps) -> pool {st['pool_after']}; "
            f"per task {st['selected_per_task']}"
            + (f"; scorers {st['scorer_per_cluster']}" if "scorer_per_cluster" in st else "")
        )
    clustered = [st for st in s["steps"] if "task_cluster_counts" in st]
    if clustered:
        lines += ["", "## Pseudo-skill clusters (pool rows per task and cluster, each step)", ""]
    for st in clustered:
        lines += [f"Step {st['step']}: sizes {st['cluster_sizes']}, re-seeded {st['reseeds']}", ""]
        lines += format_task_cluster_table(st["task_cluster_counts"], s["tasks"]) + [""]
    return lines
