"""mode 'continual': an ordered stream of tasks, the accuracy matrix, forgetting metrics
(docs/methods.md sections 2 and 5).

Each task of config.method.stream is a phase (workdir/task_<t>_<name>/): train on that task's
sources for train.steps, then evaluate on every task of the stream (row t of the accuracy matrix). A
stream stopped in the middle resumes at the task and step where it stopped. Every approach starts
from the same base model (jaxlvlm.train.base_model), which is scored first (b, for FWT).

config.method.approach (settings: jaxlvlm.methods.continual_llava.settings):
  continual_llava  frozen LVLM + the prompt pool on o_proj (jaxlvlm.methods.continual_llava)
  seq_ft           sequential fine-tuning of connector + LLM (vision frozen)
  seq_lora         sequential LoRA (config.lora targets/rank) on the frozen LVLM
  replay           seq_ft with replay_per_task samples of every earlier task mixed in
  joint            one multi-task run on all tasks for T * train.steps (the upper bound; final row)
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np

from jaxlvlm import sharding as shd
from jaxlvlm.data.pipeline import make_train_iterator
from jaxlvlm.eval import continual_metrics as cm
from jaxlvlm.eval import plots
from jaxlvlm.files import (
    PathLike,
    makedirs,
    run_path,
    safe_name,
    write_json_atomic,
    write_text_atomic,
)
from jaxlvlm.methods import prompt_pool as pp
from jaxlvlm.methods.continual_llava import training as CL
from jaxlvlm.methods.continual_llava.settings import ContinualSettings
from jaxlvlm.methods.settings import settings_from
from jaxlvlm.runners.registry import register_runner
from jaxlvlm.train import run_setup as RS
from jaxlvlm.train.base_model import base_params, base_scores
from jaxlvlm.train.phase import MethodHooks, read_phase, run_phase, scores_vector
from jaxlvlm.train.phase_config import phase_config, task_specs

FROZEN_VISION = ("vision/.*",)


def stream_of(config, s: ContinualSettings) -> list[str]:
    """The stream's task names in training order, checked against the run's tasks."""
    tasks = _run_tasks(config)
    stream = list(s.stream) or tasks
    unknown = [t for t in stream if t not in tasks]
    if unknown or len(set(stream)) != len(stream):
        raise ValueError(
            f"config.method.stream={stream}: tasks must be distinct names from {tasks}"
        )
    return stream


def _run_tasks(config) -> list[str]:
    """The run's task names in data order (config.data.tasks, else the sources' first appearance)."""
    return list(config.data.tasks) or list(
        dict.fromkeys(dict(x)["task"] for x in config.data.sources)
    )


@register_runner("continual", settings=ContinualSettings)
def run_continual(config, workdir: PathLike) -> dict:
    """Runs the stream (resuming), fills the accuracy matrix, writes report.md and summary.json."""
    s = settings_from(ContinualSettings, config.method)
    stream = stream_of(config, s)
    makedirs(workdir)
    # The base trains on the run's tasks in data order, not stream order: every task order of one
    # stream (config.data.tasks the same) then trains the identical base, so runs can share it.
    params0 = base_params(config, workdir, _run_tasks(config), s)
    b = base_scores(config, workdir, stream, params0, s)
    if s.approach == "joint":
        summary = _joint(config, workdir, stream, params0, b)
    else:
        summary = _stream(config, workdir, stream, params0, b, s)
    return {"summary": summary, "report": write_continual_report(workdir, summary)}


def _joint(config, workdir, stream, params0, b) -> dict:
    sources = [x for t in stream for x in task_specs(config, t)]
    steps = config.train.steps * len(stream)
    c = phase_config(config, sources, steps, stream, freeze=FROZEN_VISION, lora=False)
    res = run_phase(c, run_path(workdir) / "joint", init_params=params0, need_state=False)
    return cm.final_row_summary(stream, scores_vector(res.scores, stream), b, res.wall_s)


def _stream(config, workdir, stream, params0, b, s: ContinualSettings) -> dict:
    T = len(stream)
    a = np.full((T, T), np.nan)
    carried = {"params": params0, "lora": None, "pool": None, "memory": None}
    wall = 0.0
    for t, task in enumerate(stream):
        phase_dir = run_path(workdir) / f"task_{t}_{safe_name(task)}"
        sources = task_specs(config, task)
        if s.approach == "replay":
            earlier = [x for p in stream[:t] for x in task_specs(config, p)]
            sources += [dict(x, num=s.replay_per_task) for x in earlier]
        res = _train_task(config, phase_dir, sources, stream, t, carried, s)
        a[t] = scores_vector(res.scores, stream)
        wall += res.wall_s
        logging.info(
            "after task %d (%s): %s", t, task, dict(zip(stream, a[t].round(1), strict=True))
        )
    summary = {
        "approach": s.approach,
        "tasks": stream,
        "matrix": a.tolist(),
        "base": _list(b),
        "metrics": {k: float(v) for k, v in cm.continual_metrics(a, b).items()},
        "wall_s": wall,
    }
    if s.approach == "continual_llava":
        summary["frozen_base_unchanged"] = _same_tree(params0, res.state.params)
        summary["pool_selection"] = CL.selection_record(res.state.method_state, stream, s.top_m)
    return summary


def _train_task(config, phase_dir, sources, stream, t, carried, s: ContinualSettings):
    """Task t of the stream for the approach; updates ``carried`` (what the next task starts from)."""
    steps = config.train.steps
    if s.approach == "continual_llava":
        return _pool_task(config, phase_dir, sources, stream, t, carried, s)
    if s.approach == "seq_lora":
        c = phase_config(config, sources, steps, stream, freeze=CL.FROZEN_BASE, lora=True)
        lora = carried["lora"]
        hooks = MethodHooks(lora_init=(lambda r, lo=lora: lo) if lora is not None else None)
        res = run_phase(c, phase_dir, init_params=carried["params"], hooks=hooks)
        carried["lora"] = res.state.lora
        return res
    c = phase_config(config, sources, steps, stream, freeze=FROZEN_VISION, lora=False)
    res = run_phase(c, phase_dir, init_params=carried["params"])
    carried["params"] = res.state.params
    return res


def _pool_task(config, phase_dir, sources, stream, t, carried, s: ContinualSettings):
    """Continual LLaVA's task t: key alignment (unless the phase has started), then the pool phase.

    Weight decay is off: it would shrink the pool entries a task does not select.
    """
    c = phase_config(
        config, sources, config.train.steps, stream, freeze=CL.POOL_FREEZE, weight_decay=0.0
    )
    run = RS.prepare_run(c, phase_dir)
    pcfg = CL.pool_config(run.model_cfg, s, len(stream))
    tid = run.model_cfg.image_token_id
    if carried["pool"] is None:
        carried["pool"] = pp.init_pool(jax.random.PRNGKey(config.seed + 1), pcfg)
        carried["memory"] = pp.init_memory(pcfg)
    if not _started(phase_dir):
        batches = make_train_iterator(
            run.data_cfg, run.tokenizer, run.image_cfg, run.mesh, config.seed + 1000 + t
        )
        wrap = CL.embedding_wrapper(s, tid)
        batches = wrap(batches, run) if wrap is not None else batches
        with shd.mesh_context(run.mesh, run.rules):
            carried["pool"] = CL.align_keys(
                carried["params"], carried["pool"], batches, pcfg, s, tid
            )
    hooks = CL.pool_hooks(
        run.model, run.tokenizer, tid, pcfg, s, t, carried["pool"], carried["memory"]
    )
    res = run_phase(c, phase_dir, init_params=carried["params"], hooks=hooks)
    carried["pool"], carried["memory"] = res.state.lora, res.state.method_state
    return res


def _started(phase_dir: PathLike) -> bool:
    """The phase is complete or has a checkpoint (its keys were aligned before)."""
    ckpt = run_path(phase_dir) / "checkpoints"
    has_ckpt = ckpt.is_dir() and any(d.name.isdigit() for d in ckpt.iterdir())
    return read_phase(phase_dir) is not None or has_ckpt


def _same_tree(x, y) -> bool | None:
    if x is None:
        return None
    xs = jax.tree_util.tree_leaves(jax.device_get(x))
    ys = jax.tree_util.tree_leaves(jax.device_get(y))
    return len(xs) == len(ys) and all(
        np.array_equal(np.asarray(p), np.asarray(q)) for p, q in zip(xs, ys, strict=True)
    )


def _list(x):
    return None if x is None else np.asarray(x).tolist()


def write_continual_report(workdir: PathLike, s: dict) -> str | None:
    """report.md + summary.json (+ accuracy.png) in the workdir (process 0)."""
    if jax.process_index() != 0:
        return None
    write_json_atomic(run_path(workdir) / "summary.json", s, what="summary")
    tasks = s["tasks"]
    lines = [f"# jaxlvlm: continual instruction tuning ({s['approach']})", ""]
    lines += [f"Stream: {' -> '.join(tasks)}", ""]
    if "matrix" in s:
        lines += _matrix_section(workdir, s)
    else:
        lines += plots.markdown_table(["", *tasks, "ACC"], [["joint", *s["final"], s["ACC"]]])
        lines.append("")
    lines += [f"Training + evaluation time: {s['wall_s']:.1f} s", ""]
    path = run_path(workdir) / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n", what="report")
    return os.fspath(path)


def _matrix_section(workdir: PathLike, s: dict) -> list[str]:
    tasks, a = s["tasks"], np.asarray(s["matrix"])
    lines = ["## Metrics (scores 0-100)", ""]
    lines += plots.markdown_table(list(s["metrics"]), [list(s["metrics"].values())]) + [""]
    lines += ["## Accuracy matrix a[t, i] (row: after training task t; column: task i)", ""]
    rows = [[t, *a[i]] for i, t in enumerate(tasks)]
    if s.get("base") is not None:
        rows.insert(0, ["(base model)", *s["base"]])
    lines += plots.markdown_table(["after \\ on", *tasks], rows) + [""]
    path = run_path(workdir) / "accuracy.png"
    lines += plots.task_matrix_lines(
        a, tasks, path, "accuracy matrix", ("after task", "evaluated task"), "{:.0f}"
    )
    if "frozen_base_unchanged" in s:
        lines += [
            f"Frozen LVLM parameters bitwise unchanged after the stream: {s['frozen_base_unchanged']}",
            "",
        ]
    if "pool_selection" in s:
        sel = s["pool_selection"]
        lines += ["## Pool entries selected per task (training instances' mean coefficients)", ""]
        rows = [
            [t, " ".join(map(str, top)), " ".join(f"{c[e]:.2f}" for e in top)]
            for t, top, c in zip(tasks, sel["top_entries"], sel["mean_coefficient"], strict=True)
        ]
        lines += plots.markdown_table(["task", "top entries", "their mean coefficients"], rows)
        lines.append("")
    return lines
