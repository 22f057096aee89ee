"""A run's checkpoint -> a Hugging Face directory (weights, config, tokenizer, image processor).

The model architecture is the one the run trained: its ``init_from`` checkpoint's model_config.json,
else ``config.model`` with the run's tokenizer. LoRA factors are merged into the decoder's weights,
or (``merge=False``) written next to the base weights as a PEFT adapter in ``<out>/adapter``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from jaxlvlm.convert import save_pretrained_hf
from jaxlvlm.convert.api import read_converted_config
from jaxlvlm.convert.hf_processor import write_processor_files
from jaxlvlm.convert.lora_export import (
    CAUSAL_LM_LAYER_PREFIX,
    LLAVA_LAYER_PREFIX,
    merge_lora,
    write_peft_adapter,
)
from jaxlvlm.data.tokenizer import load_tokenizer
from jaxlvlm.files import PathLike, local_output_dir, run_path
from jaxlvlm.models.config import LVLMConfig, TextConfig
from jaxlvlm.train.checkpoint import Checkpointer
from jaxlvlm.train.setup import model_config_from

ADAPTER_DIR = "adapter"


@dataclasses.dataclass
class RunWeights:
    """What a run's checkpoint holds for export: params and LoRA factors as numpy float32 trees."""

    config: ml_collections.ConfigDict
    model_cfg: LVLMConfig | TextConfig
    params: dict[str, Any]
    lora: dict[str, Any]
    step: int
    tokenizer: Any


def _model_config(config: ml_collections.ConfigDict, tokenizer: Any) -> LVLMConfig | TextConfig:
    if config.init_from:
        return read_converted_config(config.init_from)

    return model_config_from(config, tokenizer)


def load_run_weights(workdir: PathLike, step: int | None = None) -> RunWeights:
    """Reads ``<workdir>/checkpoints/<step>`` (default: the latest) on the host.

    Raises FileNotFoundError naming the workdir when it has no checkpoint, ValueError for a step that
    is not there (listing those that are).
    """

    ckpt = Checkpointer(workdir)  # read-only here: restores are synchronous
    try:
        steps = ckpt.all_steps()
        if not steps:
            raise FileNotFoundError(
                f"{ckpt.directory}: no checkpoint; is --workdir the directory a jaxlvlm run wrote?"
            )
        step = max(steps) if step is None else step
        if step not in steps:
            raise ValueError(f"{ckpt.directory}: no checkpoint at step {step}; saved: {steps}")
        # No target tree: the state comes back as saved (nested dicts of arrays), whatever the
        # optimizer or device count of the run; only params and lora are kept.
        restored = ckpt.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(), config=ocp.args.JsonRestore()
            ),
        )
    finally:
        ckpt.close()
    config = ml_collections.ConfigDict(restored["config"])
    state = restored["state"]
    host = lambda tree: jax.tree.map(lambda x: np.asarray(x, np.float32), tree)  # noqa: E731
    tokenizer = load_tokenizer(config.tokenizer)
    return RunWeights(
        config=config,
        model_cfg=_model_config(config, tokenizer),
        params=host(state["params"]),
        lora=host(state.get("lora") or {}),
        step=step,
        tokenizer=tokenizer,
    )


def merged_params(run: RunWeights) -> dict[str, Any]:
    """The run's params with its LoRA (if any) merged into the decoder."""
    if not run.lora:
        return run.params
    alpha = float(run.config.lora.alpha)
    if isinstance(run.model_cfg, LVLMConfig):
        return {
            **run.params,
            "llm": merge_lora(run.model_cfg.text, run.params["llm"], run.lora, alpha),
        }
    return merge_lora(run.model_cfg, run.params, run.lora, alpha)


def export_run(
    workdir: PathLike, out_dir: PathLike, step: int | None = None, merge: bool = True
) -> RunWeights:
    """Writes ``out_dir``: model.safetensors + config.json (LlavaForConditionalGeneration or the
    causal LM), the tokenizer with its chat template, and for an LVLM preprocessor_config.json and
    processor_config.json. merge=False keeps the base weights as trained and writes the LoRA factors
    as a PEFT adapter in ``out_dir/adapter``. Either path may be a URL (gs://...): transformers'
    writers take local directories, so a remote ``out_dir`` is written locally and copied."""
    run = load_run_weights(workdir, step)
    is_lvlm = isinstance(run.model_cfg, LVLMConfig)
    params = merged_params(run) if merge else run.params
    with local_output_dir(out_dir) as local:
        save_pretrained_hf(run.model_cfg, params, local)
        image_token = ""
        if is_lvlm:
            image_token = run.tokenizer.convert_ids_to_tokens(run.model_cfg.image_token_id)
        write_processor_files(local, run.model_cfg, run.tokenizer, image_token)
        if run.lora and not merge:
            prefix = LLAVA_LAYER_PREFIX if is_lvlm else CAUSAL_LM_LAYER_PREFIX
            write_peft_adapter(
                os.path.join(local, ADAPTER_DIR),
                run.lora,
                float(run.config.lora.alpha),
                prefix,
                os.fspath(run_path(out_dir)),  # where the base weights end up
            )
    logging.info(
        "exported %s step %d -> %s (%s)",
        workdir,
        run.step,
        out_dir,
        "LoRA merged"
        if run.lora and merge
        else "LoRA as a PEFT adapter"
        if run.lora
        else "no LoRA",
    )
    return run
