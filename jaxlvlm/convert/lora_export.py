"""LoRA factors of a run -> merged decoder weights, or a PEFT adapter directory.

The factors are jaxlvlm.train.lora's: per target a [layers, 1, d_in, R] and b [layers, 1, R, d_out],
scaled by alpha / R; a projection then computes x W + (alpha / R) (x a) b with W's flattened
[d_in, d_out] view (heads flattened), so merging adds (alpha / R) a b to that view of W.

PEFT's format (what ``PeftModel.from_pretrained`` reads): adapter_config.json (peft_type LORA, r,
lora_alpha, target_modules, ...) and adapter_model.safetensors with, per adapted Linear,
``base_model.model.<module path>.lora_A.weight`` [R, d_in] and ``...lora_B.weight`` [d_out, R]
(PyTorch Linear weights are [out, in]); PEFT scales by lora_alpha / r, the same factor.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from jaxlvlm.convert.hf_io import ConversionError
from jaxlvlm.models.config import TextConfig

# Module path of a decoder layer's projection in transformers, for LLaVA and for a causal LM.
LLAVA_LAYER_PREFIX = "model.language_model.layers."
CAUSAL_LM_LAYER_PREFIX = "model.layers."
_MODULE = {
    "q_proj": "self_attn.q_proj",
    "k_proj": "self_attn.k_proj",
    "v_proj": "self_attn.v_proj",
    "o_proj": "self_attn.o_proj",
    "gate_proj": "mlp.gate_proj",
    "up_proj": "mlp.up_proj",
    "down_proj": "mlp.down_proj",
}


def _deltas(lora: dict[str, Any], alpha: float) -> dict[str, np.ndarray]:
    """{target: [layers, d_in, d_out] float32} = (alpha / R) a b for each target."""
    out = {}
    for target, f in lora.items():
        if target not in _MODULE:
            raise ConversionError(f"LoRA target {target!r} is not a decoder projection")
        a, b = np.asarray(f["a"], np.float32), np.asarray(f["b"], np.float32)
        if a.ndim != 4 or a.shape[1] != 1:
            raise ConversionError(
                f"LoRA '{target}': a has shape {a.shape}, expected [layers, 1, d_in, R]; only plain "
                "LoRA factors merge (not a method's pool of low-rank entries)"
            )
        out[target] = (alpha / a.shape[-1]) * np.einsum("lir,lro->lio", a[:, 0], b[:, 0])
    return out


def merge_lora(cfg: TextConfig, llm: dict[str, Any], lora: dict[str, Any], alpha: float) -> dict:
    """Decoder params (numpy, scanned 'layers' or per-layer 'layers_{i}') with every target's
    (alpha / R) a b added to its kernel. Returns a new tree; ``llm`` is not changed."""
    out = dict(llm)
    for target, delta in _deltas(lora, alpha).items():
        group, name = _MODULE[target].split(".")
        if "layers" in llm:
            layers = _copy_path(out, ("layers", group, name))
            kernel = np.asarray(layers["kernel"], np.float32)
            layers["kernel"] = kernel + delta.reshape(kernel.shape)
            continue
        for i in range(cfg.num_layers):
            node = _copy_path(out, (f"layers_{i}", group, name))
            kernel = np.asarray(node["kernel"], np.float32)
            node["kernel"] = kernel + delta[i].reshape(kernel.shape)
    return out


def _copy_path(tree: dict, path: tuple[str, ...]) -> dict:
    """Shallow-copies the dicts along ``path`` (so the caller's tree stays unchanged); returns the
    last one."""
    node = tree
    for key in path:
        node[key] = dict(node[key])
        node = node[key]
    return node


def peft_adapter(
    lora: dict[str, Any], alpha: float, layer_prefix: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(adapter tensors, adapter_config.json dict) in PEFT's LoRA format.

    layer_prefix: LLAVA_LAYER_PREFIX or CAUSAL_LM_LAYER_PREFIX. target_modules is a regex that
    matches only the decoder's projections (a plain name like 'q_proj' would also hit the vision
    tower's attention).
    """
    tensors: dict[str, np.ndarray] = {}
    rank = None
    for target, f in lora.items():
        a, b = np.asarray(f["a"], np.float32), np.asarray(f["b"], np.float32)
        rank = a.shape[-1]
        for i in range(a.shape[0]):
            key = f"base_model.model.{layer_prefix}{i}.{_MODULE[target]}"
            tensors[f"{key}.lora_A.weight"] = np.ascontiguousarray(a[i, 0].T)
            tensors[f"{key}.lora_B.weight"] = np.ascontiguousarray(b[i, 0].T)
    names = "|".join(sorted(lora))
    prefix = re.escape(layer_prefix)
    config = {
        "peft_type": "LORA",
        "task_type": None,
        "r": int(rank),
        "lora_alpha": float(alpha),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "target_modules": rf"{prefix}\d+\.(self_attn|mlp)\.({names})",
        "base_model_name_or_path": None,
    }
    return tensors, config


def write_peft_adapter(
    out_dir: str, lora: dict[str, Any], alpha: float, layer_prefix: str, base_model: str
) -> None:
    """Writes adapter_config.json + adapter_model.safetensors (PEFT loads the directory with
    ``PeftModel.from_pretrained(base, out_dir)``); ``base_model`` is recorded as the base's path."""

    if not lora:
        raise ConversionError("the run has no LoRA factors: there is no adapter to write")
    tensors, config = peft_adapter(lora, alpha, layer_prefix)
    config["base_model_name_or_path"] = base_model
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    save_file(
        tensors, os.path.join(out_dir, "adapter_model.safetensors"), metadata={"format": "pt"}
    )
