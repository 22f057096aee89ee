"""Public conversion API: load_pretrained / save_pretrained_hf / save_converted / load_converted.

``load_pretrained`` dispatches on what ``path`` is: a ``.gguf`` file (Llama architecture, through
jaxlvlm.convert.gguf) or a Hugging Face directory, by config.json's ``architectures`` (else
``model_type``). Only safetensors are read; pickle files are refused; remote code is never run.
Params come back as host numpy arrays so the caller places them (e.g. ``jax.device_put`` with the
shardings of ``jaxlvlm.models.sharded_init.param_shardings``) without a full copy on one device.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import linen as nn

from jaxlvlm.convert import llama, llava, vision
from jaxlvlm.convert.gguf import gguf_to_hf
from jaxlvlm.convert.hf_io import (
    PICKLE_SUFFIXES,
    ConversionError,
    TensorSource,
    read_config,
    read_safetensors_dir,
    write_safetensors_dir,
)
from jaxlvlm.files import (
    PathLike,
    is_remote,
    local_copy,
    local_output_dir,
    makedirs,
    read_json,
    run_path,
    write_text_atomic,
)
from jaxlvlm.models.config import (
    LVLMConfig,
    ModelConfig,
    TextConfig,
    VisionConfig,
    config_from_dict,
    config_to_dict,
)

log = logging.getLogger(__name__)

# architecture name -> (model_type, kind)
SUPPORTED_ARCHITECTURES: dict[str, tuple[str, str]] = {
    "LlavaForConditionalGeneration": ("llava", "lvlm"),
    "LlamaForCausalLM": ("llama", "text"),
    "Qwen2ForCausalLM": ("qwen2", "text"),
    "CLIPVisionModel": ("clip_vision_model", "vision"),
    "SiglipVisionModel": ("siglip_vision_model", "vision"),
}
_KIND_BY_MODEL_TYPE = {mt: kind for mt, kind in SUPPORTED_ARCHITECTURES.values()}
_SUPPORTED_TEXT = (
    f"supported architectures: {sorted(SUPPORTED_ARCHITECTURES)} (HF safetensors directories) and "
    "Llama-architecture .gguf files"
)
# Buffers some checkpoints carry that hold no weights.
_BUFFER_SUFFIXES = ("rotary_emb.inv_freq", "embeddings.position_ids")


def _kind_of(hf: dict[str, Any], path: str) -> str:
    archs = hf.get("architectures") or []
    for arch in archs:
        if arch in SUPPORTED_ARCHITECTURES:
            return SUPPORTED_ARCHITECTURES[arch][1]
    model_type = hf.get("model_type")
    if not archs and model_type in _KIND_BY_MODEL_TYPE:
        return _KIND_BY_MODEL_TYPE[model_type]
    raise ConversionError(
        f"{path}: architecture {archs or model_type!r} is not supported; {_SUPPORTED_TEXT}"
    )


def _check_all_used(src: TensorSource, ignored: list[str]) -> None:
    leftover = [k for k in src.unused() if not k.endswith(_BUFFER_SUFFIXES)]
    if leftover:
        raise ConversionError(
            f"{src.origin}: {len(leftover)} tensors are not mapped to any parameter "
            f"(first: {leftover[:8]}); the checkpoint does not match its config.json architecture"
        )
    if ignored:
        log.warning(
            "%s: %d tensors are not used by this model and were not loaded: %s",
            src.origin,
            len(ignored),
            ignored,
        )


def _text_from_hf(hf: dict[str, Any], src: TensorSource, scan: bool) -> tuple[TextConfig, Any]:
    cfg = llama.text_config_from_hf(hf)
    params = llama.decoder_params_from_hf(
        cfg, src, prefix="model.", lm_head_key="lm_head.weight", scan=scan
    )
    return cfg, params


def load_pretrained(
    path: PathLike, scan_layers: bool = False
) -> tuple[ModelConfig, dict[str, Any]]:
    """Loads an HF directory or a .gguf file -> (config, params).

    config: LVLMConfig (LLaVA), TextConfig (Llama / Qwen2 / GGUF) or VisionConfig (CLIP / SigLIP
    vision towers); params: the matching module's tree (build_model(config)), numpy arrays, with layers
    stacked on a leading axis when ``scan_layers`` (RuntimeConfig.scan_layers) is set.
    Raises ConversionError for pickle-only directories, unsupported architectures, missing, mis-shaped
    or unmapped tensors. Tensors a model has no use for (SigLIP's pooling head, CLIP's post-layernorm)
    are named in a warning.
    """
    if is_remote(path):
        # The safetensors and GGUF readers map local files: read a downloaded copy.
        with local_copy(path) as local:
            return load_pretrained(local, scan_layers)
    path = os.fspath(path)
    if os.path.isfile(path):
        if path.endswith(".gguf"):
            hf, tensors = gguf_to_hf(path)
            src = TensorSource(tensors, path)
            cfg, params = _text_from_hf(hf, src, scan_layers)
            _check_all_used(src, [])
            return cfg, params
        if path.endswith(PICKLE_SUFFIXES):
            raise ConversionError(
                f"{path}: PyTorch pickle weights are not loaded (unpickling runs arbitrary code); "
                "convert them to safetensors first"
            )
        raise ConversionError(f"{path}: not a .gguf file nor a directory; {_SUPPORTED_TEXT}")
    if not os.path.isdir(path):
        raise ConversionError(f"{path}: no such file or directory")
    hf = read_config(path)
    kind = _kind_of(hf, path)
    src = TensorSource(read_safetensors_dir(path), path)
    ignored: list[str] = []
    if kind == "lvlm":
        has_head = any(
            layout.lm_head_key in src for layout in (llava.SAVED_LAYOUT, llava.IN_MEMORY_LAYOUT)
        )
        # No lm_head tensor means the read-out is the embedding table, whatever config.json says.
        cfg = llava.llava_config_from_hf(hf, tied=None if has_head else True)
        params, ignored = llava.llava_params_from_hf(cfg, src, scan=scan_layers)
    elif kind == "text":
        cfg, params = _text_from_hf(hf, src, scan_layers)
    else:
        cfg = vision.vision_config_from_hf(hf)
        params = vision.vision_params_from_hf(cfg, src, "", scan=scan_layers)
        ignored = vision.vision_take_unused(cfg, src, "")
    _check_all_used(src, ignored)
    return cfg, params


def save_pretrained_hf(config: ModelConfig, params: dict[str, Any], out_dir: PathLike) -> None:
    """Writes ``params`` as a Hugging Face directory (config.json + model.safetensors, float32) that
    transformers loads: LlavaForConditionalGeneration, LlamaForCausalLM / Qwen2ForCausalLM, or
    CLIPVisionModel / SiglipVisionModel. Scanned or unscanned layer layouts are both accepted.
    """
    params = jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), nn.unbox(params))
    if isinstance(config, LVLMConfig):
        hf, tensors = llava.llava_config_to_hf(config), llava.llava_params_to_hf(config, params)
    elif isinstance(config, TextConfig):
        hf = llama.text_config_to_hf(config)
        tensors = llama.decoder_params_to_hf(config, params, prefix="model.")
    elif isinstance(config, VisionConfig):
        hf, tensors = vision.vision_config_to_hf(config), vision.vision_params_to_hf(config, params)
    else:
        raise TypeError(f"save_pretrained_hf: not a model config: {type(config).__name__}")
    hf = {**hf, "dtype": "float32"}
    with local_output_dir(out_dir) as local:  # safetensors writes local files; copied when remote
        write_safetensors_dir(local, hf, tensors)


MODEL_CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"


def _is_scanned(params: dict[str, Any]) -> bool:
    tree = params.get("llm", params) if isinstance(params, dict) else params
    return isinstance(tree, dict) and "layers" in tree


def save_converted(out_dir: PathLike, config: ModelConfig, params: dict[str, Any]) -> None:
    """Writes a converted checkpoint: ``model_config.json`` (config_to_dict(config) plus
    ``scan_layers``, the params' layer layout) and ``params/`` (orbax StandardCheckpointer).
    ``out_dir`` is a local directory or a URL (gs://bucket/ckpt)."""

    out = makedirs(out_dir)
    meta = {**config_to_dict(config), "scan_layers": _is_scanned(params)}
    text = json.dumps(meta, indent=2, sort_keys=True)
    write_text_atomic(out / MODEL_CONFIG_FILE, text, what="converted model config")
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(out / PARAMS_DIR, params, force=True)
    ckptr.wait_until_finished()


def read_converted_config(path: PathLike) -> ModelConfig:
    """The model config of a directory written by ``save_converted`` (its model_config.json)."""
    return read_converted_meta(path)[0]


def read_converted_meta(path: PathLike) -> tuple[ModelConfig, bool | None]:
    """(model config, whether the params are stored layer-scanned, None if not recorded) of a
    directory written by ``save_converted`` (local or a URL)."""
    meta = read_json(run_path(path) / MODEL_CONFIG_FILE)
    if meta is None:
        raise ConversionError(
            f"{os.fspath(path)}: no {MODEL_CONFIG_FILE}; expected a directory written by "
            "tools/convert_checkpoint.py or tools/assemble_llava.py (jaxlvlm.convert.save_converted)"
        )
    scanned = meta.pop("scan_layers", None)
    return config_from_dict(meta), scanned


def load_converted(
    path: PathLike, abstract_params: Any = None
) -> tuple[ModelConfig, dict[str, Any]]:
    """Reads a directory written by ``save_converted`` -> (config, params).

    abstract_params: a tree of jax.ShapeDtypeStruct (with shardings) to restore into, e.g. the
    trainer's eval_shape'd params, so the arrays come back sharded; None restores them as saved.
    """

    config = read_converted_config(path)
    ckptr = ocp.StandardCheckpointer()
    params = ckptr.restore(run_path(path) / PARAMS_DIR, abstract_params)
    return config, params
