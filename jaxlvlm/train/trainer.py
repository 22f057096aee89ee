"""The trainer as named phases: tokenizer and model config, mesh, state layout, data, resume or
init, step, evaluation, loop, report. Runners (train, eval, the methods') compose these.

``run_training(config, workdir)`` is plain visual instruction tuning; methods pass their own
``method_state`` (e.g. {'task_weights': [T]}), ``loss_fn`` or ``forward_fn``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh

from jaxlvlm.models.config import LVLMConfig, RuntimeConfig, TextConfig, config_from_dict
from jaxlvlm.train import setup as S
from jaxlvlm.train.checkpoint import Checkpointer
from jaxlvlm.train.loop import train_loop
from jaxlvlm.train.lora import lora_to_lowrank
from jaxlvlm.train.metrics import MetricsWriter, read_metrics
from jaxlvlm.train.param_table import format_param_table
from jaxlvlm.train.state import TrainState
from jaxlvlm.train.step_flops import run_step_flops


@dataclasses.dataclass
class Run:
    """Everything about a run that is not the train state."""

    config: Any
    workdir: str
    tokenizer: Any
    model_cfg: LVLMConfig | TextConfig
    runtime: RuntimeConfig
    model: nn.Module
    mesh: Mesh
    rules: tuple
    data_cfg: Any
    image_cfg: Any
    task_names: list[str]


def config_json(config) -> dict:
    """The config as plain JSON (saved with every checkpoint)."""
    return json.loads(config.to_json_best_effort())


def task_names_from(data_cfg) -> list[str]:
    """Task names: data.tasks, else the sources' 'task' keys, else a name per source spec
    (family[/domain], tfds name, or json path), in the pipeline's task-id order."""
    if data_cfg.tasks:
        return list(data_cfg.tasks)
    specs = data_cfg.sources
    if specs and all(s.get("task") for s in specs):
        return list(dict.fromkeys(s["task"] for s in specs))
    names = []
    for s in specs:
        name = (
            s.get("task")
            or s.get("family")
            or s.get("name")
            or os.path.basename(str(s.get("path", "source")))
        )
        if s.get("domain") and s.get("domain") != "plain":
            name = f"{name}/{s['domain']}"
        names.append(name)
    return names


def read_model_config(init_from: str) -> tuple[LVLMConfig | TextConfig, bool | None]:
    """(model config, whether its params are stored layer-scanned) of a converted checkpoint."""
    path = os.path.join(init_from, "model_config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"config.init_from={init_from!r}: no model_config.json there; convert a checkpoint "
            "with tools/convert_checkpoint.py first"
        )
    with open(path) as f:
        d = json.load(f)
    scanned = d.pop("scan_layers", None)
    return config_from_dict(d), scanned


def prepare_run(config, workdir: str) -> Run:
    """Tokenizer, model config (from config.model, or the converted checkpoint of init_from),
    model, mesh and data config."""
    from jaxlvlm.data.pipeline import DataConfig, ImageConfig
    from jaxlvlm.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(config.tokenizer)
    runtime = S.runtime_from(config)
    if config.init_from:
        model_cfg, scanned = read_model_config(config.init_from)
        logging.info("model architecture from %s (config.model is not used)", config.init_from)
        if scanned is not None and scanned != runtime.scan_layers:
            raise ValueError(
                f"config.init_from={config.init_from!r} stores its layers "
                f"{'stacked (scan)' if scanned else 'one by one'}; set "
                f"config.runtime.scan_layers={bool(scanned)} to match"
            )
    else:
        model_cfg = S.model_config_from(config, tokenizer)
    model = S.build(model_cfg, runtime)
    mesh, rules = S.mesh_from_config(config)
    S.log_devices(mesh)
    data_cfg = DataConfig.from_dict(config.data)
    image_cfg = (
        ImageConfig.from_lvlm_config(model_cfg) if isinstance(model_cfg, LVLMConfig) else None
    )
    return Run(
        config=config,
        workdir=workdir,
        tokenizer=tokenizer,
        model_cfg=model_cfg,
        runtime=runtime,
        model=model,
        mesh=mesh,
        rules=rules,
        data_cfg=data_cfg,
        image_cfg=image_cfg,
        task_names=task_names_from(data_cfg),
    )


def load_init_params(run: Run, setup: S.StateSetup) -> Any:
    """Parameters of config.init_from, read straight into their shardings."""
    from jaxlvlm.convert import load_converted

    abstract = jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        setup.abstract.params,
        setup.param_shardings,
    )
    _, params = load_converted(run.config.init_from, abstract_params=abstract)
    return params


def init_or_restore(
    run: Run, setup: S.StateSetup, checkpointer: Checkpointer, data_iter=None
) -> TrainState:
    """The latest checkpoint of the workdir if there is one (with the data iterator's state), else
    init_from's parameters, else a fresh init."""
    latest = checkpointer.latest_step()
    if latest is not None:
        state, data_state, saved_config = checkpointer.restore(latest, setup.abstract)
        if data_iter is not None and data_state is not None:
            data_iter.set_state(data_state)
        _warn_config_drift(saved_config, config_json(run.config))
        logging.info("resumed from %s/%d", checkpointer.directory, latest)
        return state
    if run.config.init_from:
        return setup.create(load_init_params(run, setup))
    return setup.create()


def _warn_config_drift(saved: dict, now: dict, prefix: str = "") -> None:
    ignore = {"train.halt_after_steps", "train.progress_bar"}
    for k in sorted(set(saved) | set(now)):
        key = prefix + k
        a, b = saved.get(k), now.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            _warn_config_drift(a, b, key + ".")
        elif a != b and key not in ignore:
            logging.warning("config.%s differs from the checkpoint's (%r -> %r)", key, a, b)


def step_flops(run: Run) -> float:
    d = run.data_cfg
    slots = d.max_images if isinstance(run.model_cfg, LVLMConfig) else 0
    # Counts only the work the step does with its frozen weights (see jaxlvlm.train.step_flops).
    return run_step_flops(
        run.model, run.model_cfg, run.config, d.global_batch_size, max(d.buckets), slots
    )


def make_evaluator(run: Run, lowrank_fn: Callable | None = None):
    """evaluate_fn(state) -> EvalResult over data.eval_sources, or None when evaluation is off."""
    from jaxlvlm.data.pipeline import make_eval_batches
    from jaxlvlm.data.tokenizer import pad_token_id
    from jaxlvlm.eval.evaluate import evaluate, make_generate_fn

    c = run.config
    if not c.eval.enabled or not (run.data_cfg.eval_sources or run.data_cfg.sources):
        return None
    batches = make_eval_batches(run.data_cfg, run.tokenizer, run.image_cfg, run.mesh, seed=c.seed)
    eos_id = run.tokenizer.eos_token_id
    pad_id = pad_token_id(run.tokenizer)

    def evaluate_state(state: TrainState):
        def lowrank(batch):
            if lowrank_fn is not None:
                return lowrank_fn(state, batch)
            return lora_to_lowrank(state.lora, c.lora.alpha, c.lora.rank) if state.lora else None

        gen = make_generate_fn(run.model, c.eval.max_new_tokens, eos_id, pad_id, lowrank)
        with run.mesh, nn.logical_axis_rules(list(run.rules)):
            return evaluate(
                lambda b: gen(state.params, b), batches, run.tokenizer, eos_id=eos_id, mesh=run.mesh
            )

    return evaluate_state


def write_param_table(run: Run, state: TrainState, labels: Any) -> None:
    table = format_param_table(state.trainable, labels)
    logging.info("parameters:\n%s", table)
    if jax.process_index() == 0:
        os.makedirs(run.workdir, exist_ok=True)
        with open(os.path.join(run.workdir, "params.txt"), "w") as f:
            f.write(table + "\n")


def finish_report(run: Run, result, wall_s: float, title: str) -> str | None:
    """Writes report.md and predictions.jsonl (process 0)."""
    from jaxlvlm.eval.report import write_report

    if jax.process_index() != 0:
        return None
    scores = result.scores if result is not None else None
    if result is not None:
        with open(os.path.join(run.workdir, "predictions.jsonl"), "w") as f:
            for p in result.predictions:
                f.write(json.dumps(p) + "\n")
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(_abstract(run)))
    details = {
        "mode": run.config.mode,
        "wall time (this process)": f"{wall_s:.1f} s",
        "steps": run.config.train.steps,
        "global batch": run.data_cfg.global_batch_size,
        "devices": f"{jax.device_count()} ({jax.devices()[0].platform})",
        "model parameters": f"{n_params:,}",
    }
    return write_report(
        run.workdir, read_metrics(run.workdir), scores, title=title, details=details
    )


def _abstract(run: Run):
    inputs = S.dummy_inputs(run.model_cfg)
    return jax.eval_shape(lambda r: run.model.init(r, **inputs), jax.random.PRNGKey(0))["params"]


def train_to_end(
    run: Run,
    state: TrainState,
    step_fn: Callable,
    data_iter: Any,
    checkpointer: Checkpointer,
    writer: MetricsWriter,
    evaluate_fn: Callable | None = None,
) -> tuple[TrainState, dict | None]:
    """The train loop of a run (or a runner's phase) to run.config.train.steps, from ``state``.

    Every trainer entry point goes through here so checkpointing, metrics, FLOPs and the bad-sample
    report are the same everywhere. Returns (final state, the data iterator's bad-sample summary or
    None); skipped samples are logged as a warning with their per-reason counts.
    """
    config = run.config
    state, _ = train_loop(
        state,
        step_fn,
        data_iter,
        config=config,
        checkpointer=checkpointer,
        writer=writer,
        task_names=run.task_names,
        step_flops=step_flops(run),
        evaluate_fn=evaluate_fn,
        config_dict=config_json(config),
    )
    summary = getattr(data_iter, "bad_sample_summary", lambda: None)()
    if summary and summary.get("skipped_total"):
        logging.warning("bad samples skipped in %s: %s", checkpointer.directory, summary)
    return state, summary


def run_training(
    config,
    workdir: str,
    *,
    method_state: dict | None = None,
    loss_fn: Callable | None = None,
    forward_fn: Callable | None = None,
    title: str = "jaxlvlm training run",
) -> dict[str, Any]:
    """Trains to config.train.steps (resuming from the workdir's latest checkpoint), evaluates,
    writes the report. Returns {'state', 'scores', 'report'}."""
    t0 = time.perf_counter()
    run = prepare_run(config, workdir)
    setup = S.plan_train_state(
        run.model, run.model_cfg, config, run.mesh, run.rules, method_state=method_state
    )
    checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints)
    from jaxlvlm.data.pipeline import make_train_iterator

    data_iter = make_train_iterator(
        run.data_cfg, run.tokenizer, run.image_cfg, run.mesh, config.seed
    )
    state = init_or_restore(run, setup, checkpointer, data_iter)
    write_param_table(run, state, setup.labels)
    step_fn = S.jit_train_step(
        run.model,
        setup,
        config,
        run.mesh,
        run.rules,
        max(len(run.task_names), 1),
        loss_fn=loss_fn,
        forward_fn=forward_fn,
    )
    evaluate_fn = make_evaluator(run)
    writer = MetricsWriter(workdir)
    try:
        state, _ = train_to_end(
            run,
            state,
            step_fn,
            data_iter,
            checkpointer,
            writer,
            evaluate_fn=(lambda s: evaluate_fn(s).scores) if evaluate_fn else None,
        )
        result = evaluate_fn(state) if evaluate_fn else None
        if result is not None:
            writer.write(int(jax.device_get(state.step)), result.scores, kind="eval")
            logging.info("final per-task scores: %s", result.scores)
    finally:
        writer.close()
        checkpointer.close()
    report = finish_report(run, result, time.perf_counter() - t0, title)
    return {"state": state, "scores": result.scores if result else None, "report": report}
