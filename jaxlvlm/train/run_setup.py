"""What a run is before its train state: tokenizer, model config, model, mesh, data config, task
names, and the evaluator and report around them. Every phase (jaxlvlm.train.phase) starts here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from etils import epath
from flax import linen as nn
from jax.sharding import Mesh

from jaxlvlm import sharding as shd
from jaxlvlm.convert import load_converted
from jaxlvlm.convert.api import read_converted_meta
from jaxlvlm.data.pipeline import DataConfig, ImageConfig, make_eval_batches
from jaxlvlm.data.tokenizer import load_tokenizer, pad_token_id
from jaxlvlm.errors import ConversionError
from jaxlvlm.eval.evaluate import evaluate, make_generate_fn
from jaxlvlm.eval.report import write_report
from jaxlvlm.files import PathLike, run_path, write_jsonl_atomic, write_text_atomic
from jaxlvlm.models.config import LVLMConfig, RuntimeConfig, TextConfig
from jaxlvlm.train import setup as S
from jaxlvlm.train.lora import lora_to_lowrank
from jaxlvlm.train.metrics import read_metrics
from jaxlvlm.train.param_table import format_param_table
from jaxlvlm.train.state import TrainState
from jaxlvlm.train.step_flops import run_step_flops


@dataclasses.dataclass
class Run:
    """Everything about a run that is not the train state."""

    config: Any
    workdir: epath.Path  # local (absolute) or a URL such as gs://bucket/run
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
    try:
        return read_converted_meta(init_from)
    except ConversionError as e:
        raise FileNotFoundError(f"config.init_from={init_from!r}: {e}") from e


def prepare_run(config, workdir: PathLike) -> Run:
    """Tokenizer, model config (from config.model, or the converted checkpoint of init_from),
    model, mesh and data config."""
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
        workdir=run_path(workdir),
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
    # setup.abstract carries the planned shardings: the arrays are born where they belong.
    _, params = load_converted(run.config.init_from, abstract_params=setup.abstract.params)
    return params


def step_flops(run: Run) -> float:
    d = run.data_cfg
    slots = d.max_images if isinstance(run.model_cfg, LVLMConfig) else 0
    # Counts only the work the step does with its frozen weights (see jaxlvlm.train.step_flops).
    return run_step_flops(
        run.model, run.model_cfg, run.config, d.global_batch_size, max(d.buckets), slots
    )


def make_weights_evaluator(run: Run):
    """evaluate(params, lora=None, lowrank_for_batch=None) -> EvalResult over data.eval_sources
    (greedy generation + each record's scorer), or None when evaluation is off.

    lora: config.lora-style factors; lowrank_for_batch(batch) -> the model's lowrank argument
    instead (a method's hooks, e.g. the prompt pool's selection per batch).
    """
    c = run.config
    if not c.eval.enabled or not (run.data_cfg.eval_sources or run.data_cfg.sources):
        return None
    batches = make_eval_batches(run.data_cfg, run.tokenizer, run.image_cfg, run.mesh, seed=c.seed)
    eos_id = run.tokenizer.eos_token_id
    pad_id = pad_token_id(run.tokenizer)

    def evaluate_weights(params, lora=None, lowrank_for_batch: Callable | None = None):
        def lowrank(batch):
            if lowrank_for_batch is not None:
                return lowrank_for_batch(batch)
            return lora_to_lowrank(lora, c.lora.alpha, c.lora.rank) if lora else None

        gen = make_generate_fn(run.model, c.eval.max_new_tokens, eos_id, pad_id, lowrank)
        with shd.mesh_context(run.mesh, run.rules):
            return evaluate(
                lambda b: gen(params, b), batches, run.tokenizer, eos_id=eos_id, mesh=run.mesh
            )

    return evaluate_weights


def make_evaluator(run: Run, lowrank_fn: Callable | None = None):
    """evaluate_fn(state) -> EvalResult over data.eval_sources, or None when evaluation is off.

    lowrank_fn(state, batch): a method's low-rank hooks (else the state's config.lora factors).
    """
    evaluate_weights = make_weights_evaluator(run)
    if evaluate_weights is None:
        return None

    def evaluate_state(state: TrainState):
        hook = (lambda batch: lowrank_fn(state, batch)) if lowrank_fn is not None else None
        return evaluate_weights(state.params, state.lora, hook)

    return evaluate_state


def write_param_table(run: Run, state: TrainState, labels: Any) -> None:
    table = format_param_table(state.trainable, labels)
    logging.info("parameters:\n%s", table)
    if jax.process_index() == 0:
        write_text_atomic(run.workdir / "params.txt", table + "\n", what="parameter table")


def finish_report(run: Run, result, wall_s: float, title: str) -> str | None:
    """Writes report.md and predictions.jsonl (process 0)."""
    if jax.process_index() != 0:
        return None
    scores = result.scores if result is not None else None
    if result is not None and result.predictions is not None:
        write_predictions(run.workdir / "predictions.jsonl", result.predictions)
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


def write_predictions(path: PathLike, predictions: list[dict]) -> None:
    """One JSON line per prediction (process 0)."""
    if jax.process_index() != 0:
        return
    write_jsonl_atomic(path, predictions, what="predictions")
