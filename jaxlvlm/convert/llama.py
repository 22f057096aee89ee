"""Hugging Face LlamaForCausalLM / Qwen2ForCausalLM <-> jaxlvlm decoder parameters and TextConfig.

One mapping table (per-layer projections and norms) drives both directions. HF Linear weights are
[out, in]; our kernels are [*in_shape, *out_shape] with heads unflattened (q_proj [C, H, D], o_proj
[H, D, C]). Prefixes are arguments because LLaVA nests the LLM ('language_model.model.' on disk,
'model.language_model.' in memory). Layers come out per layer ('layers_{i}') or stacked ('layers',
leading [num_layers] axis) for scan.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import linen as nn

from jaxlvlm.convert.hf_io import (
    ConversionError,
    TensorSource,
    read_config,
    read_safetensors_dir,
    write_safetensors_dir,
)
from jaxlvlm.models.attention import o_bias, qkv_bias
from jaxlvlm.models.config import TextConfig
from jaxlvlm.models.rope import SUPPORTED_ROPE_TYPES

ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2"}
_ROPE_KEYS = {
    "default": (),
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}
# Non-persistent buffers some older exports contain; they are recomputed, never loaded.
_IGNORABLE_SUFFIXES = (".rotary_emb.inv_freq",)


# -- config.json <-> TextConfig ---------------------------------------------------------------------


def text_config_from_hf(hf_config: Mapping[str, Any]) -> TextConfig:
    """TextConfig from a Llama/Qwen2 config.json dict (rope_theta at top level or in rope_parameters;
    rope scaling from rope_parameters or the older rope_scaling)."""
    arch = _arch_of(hf_config)
    hidden = hf_config["hidden_size"]
    heads = hf_config["num_attention_heads"]
    act = hf_config.get("hidden_act", "silu")
    if act != "silu":
        raise ConversionError(f"hidden_act '{act}' is not supported by the decoder; only 'silu'")
    rope_type, theta, scaling = _rope_from_hf(hf_config)
    if arch == "qwen2" and hf_config.get("use_sliding_window"):
        raise ConversionError(
            "Qwen2 with use_sliding_window=true is not supported (full attention only)"
        )
    head_dim = hf_config.get("head_dim") or hidden // heads
    return TextConfig(
        arch=arch,
        vocab_size=hf_config["vocab_size"],
        hidden_size=hidden,
        intermediate_size=hf_config["intermediate_size"],
        num_layers=hf_config["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=hf_config.get("num_key_value_heads") or heads,
        head_dim=0 if head_dim == hidden // heads else head_dim,
        rms_norm_eps=hf_config.get("rms_norm_eps", 1e-6),
        rope_theta=float(theta),
        rope_scaling=None if scaling is None else tuple(sorted(scaling.items())),
        max_position_embeddings=hf_config.get("max_position_embeddings", 2048),
        tie_word_embeddings=bool(hf_config.get("tie_word_embeddings", False)),
        attention_bias=True if arch == "qwen2" else bool(hf_config.get("attention_bias", False)),
        mlp_bias=bool(hf_config.get("mlp_bias", False)),
        hidden_act="silu",
    )


def _arch_of(hf_config: Mapping[str, Any]) -> str:
    for name in hf_config.get("architectures") or ():
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    model_type = hf_config.get("model_type")
    if model_type in MODEL_TYPES:
        return MODEL_TYPES[model_type]
    raise ConversionError(
        f"unsupported decoder architecture {hf_config.get('architectures')} "
        f"(model_type '{model_type}'); supported: {sorted(ARCHITECTURES)}"
    )


def _rope_from_hf(hf_config: Mapping[str, Any]) -> tuple[str, float, dict[str, Any] | None]:
    params = dict(hf_config.get("rope_parameters") or {})
    legacy = dict(hf_config.get("rope_scaling") or {})
    merged = {**legacy, **params}
    theta = merged.pop("rope_theta", hf_config.get("rope_theta", 10000.0))
    rope_type = merged.pop("rope_type", merged.pop("type", "default"))
    if rope_type not in _ROPE_KEYS:
        raise ConversionError(
            f"rope_type '{rope_type}' is not supported; supported: {list(SUPPORTED_ROPE_TYPES)}"
        )
    partial = merged.pop("partial_rotary_factor", 1.0)
    if partial != 1.0:
        raise ConversionError(f"partial_rotary_factor {partial} is not supported (only 1.0)")
    if rope_type == "default":
        return rope_type, theta, None
    missing = [k for k in _ROPE_KEYS[rope_type] if k not in merged]
    if missing:
        raise ConversionError(f"rope_type '{rope_type}' needs {missing} in rope_parameters")
    scaling = {"rope_type": rope_type, **{k: merged[k] for k in _ROPE_KEYS[rope_type]}}
    return rope_type, theta, scaling


def text_config_to_hf(cfg: TextConfig) -> dict[str, Any]:
    """config.json dict for LlamaForCausalLM / Qwen2ForCausalLM equivalent to ``cfg``."""
    if cfg.arch == "qwen2" and not cfg.attention_bias:
        raise ConversionError(
            "a qwen2 TextConfig must have attention_bias=True (Qwen2 has q/k/v bias)"
        )
    if cfg.arch == "qwen2" and cfg.mlp_bias:
        raise ConversionError("Qwen2 has no MLP bias; mlp_bias=True cannot be exported as Qwen2")
    scaling = cfg.rope_scaling_dict or {"rope_type": "default"}
    rope_parameters = {"rope_theta": cfg.rope_theta, **scaling}
    out: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM" if cfg.arch == "llama" else "Qwen2ForCausalLM"],
        "model_type": cfg.arch,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.resolved_head_dim,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_parameters": rope_parameters,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "hidden_act": cfg.hidden_act,
        "dtype": "float32",
    }
    if cfg.arch == "llama":
        out["attention_bias"] = cfg.attention_bias
        out["mlp_bias"] = cfg.mlp_bias
    else:
        out["use_sliding_window"] = False
    return out


# -- the mapping table ------------------------------------------------------------------------------


def _layer_table(cfg: TextConfig) -> list[tuple[str, tuple[int, ...], tuple[int, ...], bool]]:
    """Per-layer projections: (dotted name shared by HF and our tree, in_shape, out_shape, has_bias)."""
    c, f = cfg.hidden_size, cfg.intermediate_size
    h, k, d = cfg.num_heads, cfg.num_kv_heads, cfg.resolved_head_dim
    return [
        ("self_attn.q_proj", (c,), (h, d), qkv_bias(cfg)),
        ("self_attn.k_proj", (c,), (k, d), qkv_bias(cfg)),
        ("self_attn.v_proj", (c,), (k, d), qkv_bias(cfg)),
        ("self_attn.o_proj", (h, d), (c,), o_bias(cfg)),
        ("mlp.gate_proj", (c,), (f,), cfg.mlp_bias),
        ("mlp.up_proj", (c,), (f,), cfg.mlp_bias),
        ("mlp.down_proj", (f,), (c,), cfg.mlp_bias),
    ]


_LAYER_NORMS = ("input_layernorm", "post_attention_layernorm")


def _set(tree: dict, dotted: str, leaf: str, value: np.ndarray) -> None:
    node = tree
    for part in dotted.split("."):
        node = node.setdefault(part, {})
    node[leaf] = value


def _get(tree: Mapping, dotted: str) -> Any:
    node = tree
    for part in dotted.split("."):
        node = node[part]
    return node


# -- HF -> ours -------------------------------------------------------------------------------------


def decoder_params_from_hf(
    cfg: TextConfig,
    src: TensorSource,
    prefix: str = "model.",
    lm_head_key: str = "lm_head.weight",
    scan: bool = False,
) -> dict:
    """Decoder parameters (numpy float32 tree, the layout of ``jaxlvlm.models.decoder.Decoder``) from
    the HF tensors under ``prefix`` ('model.' for LlamaForCausalLM, 'language_model.model.' or
    'model.language_model.' inside LLaVA).

    Every tensor read is marked used in ``src``; the caller reports ``unused_keys(src)`` when it has
    taken everything it knows. A tied model may carry lm_head.weight: it must equal the embedding.
    """
    c, v = cfg.hidden_size, cfg.vocab_size
    embedding = src.take(prefix + "embed_tokens.weight", (v, c))
    params: dict[str, Any] = {
        "embed_tokens": {"embedding": embedding},
        "norm": {"scale": src.take(prefix + "norm.weight", (c,))},
    }
    if cfg.tie_word_embeddings:
        if lm_head_key in src:
            head = src.take(lm_head_key, (v, c))
            if not np.array_equal(head, embedding):
                raise ConversionError(
                    f"{src.origin}: '{lm_head_key}' differs from '{prefix}embed_tokens.weight' but "
                    "config.json says tie_word_embeddings=true; set it to false to load both"
                )
    else:
        params["lm_head"] = {"kernel": src.take(lm_head_key, (v, c)).T}
    layers = [_layer_from_hf(cfg, src, f"{prefix}layers.{i}.") for i in range(cfg.num_layers)]
    if scan:
        params["layers"] = _stack(layers)
    else:
        for i, layer in enumerate(layers):
            params[f"layers_{i}"] = layer
    return params


def _layer_from_hf(cfg: TextConfig, src: TensorSource, p: str) -> dict:
    layer: dict[str, Any] = {}
    for norm in _LAYER_NORMS:
        _set(layer, norm, "scale", src.take(f"{p}{norm}.weight", (cfg.hidden_size,)))
    for name, in_shape, out_shape, has_bias in _layer_table(cfg):
        d_in, d_out = math.prod(in_shape), math.prod(out_shape)
        weight = src.take(f"{p}{name}.weight", (d_out, d_in))
        _set(layer, name, "kernel", np.ascontiguousarray(weight.T).reshape(in_shape + out_shape))
        if has_bias:
            _set(layer, name, "bias", src.take(f"{p}{name}.bias", (d_out,)).reshape(out_shape))
    return layer


def _stack(layers: list[dict]) -> dict:
    if isinstance(layers[0], Mapping):
        return {k: _stack([layer[k] for layer in layers]) for k in layers[0]}
    return np.stack(layers)


def unused_keys(src: TensorSource) -> list[str]:
    """Checkpoint keys nobody took, except recomputed rotary buffers."""
    return [k for k in src.unused() if not k.endswith(_IGNORABLE_SUFFIXES)]


# -- ours -> HF -------------------------------------------------------------------------------------


def decoder_params_to_hf(
    cfg: TextConfig,
    params: Mapping,
    prefix: str = "model.",
    lm_head_key: str = "lm_head.weight",
) -> dict[str, np.ndarray]:
    """HF tensors {name: float32 array} from decoder params (scan or per-layer layout, boxed or not,
    jax or numpy leaves). Tied models get no lm_head tensor (transformers ties it on load)."""
    params = _to_numpy(params)
    out = {
        prefix + "embed_tokens.weight": params["embed_tokens"]["embedding"],
        prefix + "norm.weight": params["norm"]["scale"],
    }
    if not cfg.tie_word_embeddings:
        out[lm_head_key] = params["lm_head"]["kernel"].T
    for i in range(cfg.num_layers):
        layer = _layer_params(params, i, cfg.num_layers)
        p = f"{prefix}layers.{i}."
        for norm in _LAYER_NORMS:
            out[f"{p}{norm}.weight"] = _get(layer, norm)["scale"]
        for name, in_shape, out_shape, has_bias in _layer_table(cfg):
            d_in, d_out = math.prod(in_shape), math.prod(out_shape)
            node = _get(layer, name)
            out[f"{p}{name}.weight"] = node["kernel"].reshape(d_in, d_out).T
            if has_bias:
                out[f"{p}{name}.bias"] = node["bias"].reshape(d_out)
    return {k: np.ascontiguousarray(val, dtype=np.float32) for k, val in out.items()}


def _to_numpy(params: Mapping) -> dict:

    return jax.tree_util.tree_map(lambda x: np.asarray(x, dtype=np.float32), nn.unbox(dict(params)))


def _layer_params(params: Mapping, i: int, num_layers: int) -> Mapping:
    if "layers" in params:
        return jax.tree_util.tree_map(lambda x: x[i], params["layers"])
    key = f"layers_{i}"
    if key not in params:
        raise ConversionError(
            f"decoder params have neither 'layers' (scan layout) nor '{key}' (per-layer layout); "
            f"top-level keys: {sorted(params)}"
        )
    return params[key]


# -- whole directories ------------------------------------------------------------------------------


def load_hf_causal_lm(path: str, scan: bool = False) -> tuple[TextConfig, dict]:
    """Reads an HF LlamaForCausalLM / Qwen2ForCausalLM safetensors directory -> (TextConfig, params).

    Raises ConversionError for pickle-only directories, unsupported architectures, missing or
    mis-shaped tensors, and tensors the mapping does not use (listed by name).
    """
    hf_config = read_config(path)
    cfg = text_config_from_hf(hf_config)
    src = TensorSource(read_safetensors_dir(path), origin=path)
    params = decoder_params_from_hf(cfg, src, scan=scan)
    left = unused_keys(src)
    if left:
        raise ConversionError(
            f"{path}: {len(left)} tensors are not used by the {cfg.arch} mapping: {left[:20]}"
            + (" ..." if len(left) > 20 else "")
            + "; the checkpoint is not a plain LlamaForCausalLM/Qwen2ForCausalLM"
        )
    return cfg, params


def save_hf_causal_lm(cfg: TextConfig, params: Mapping, out_dir: str) -> None:
    """Writes ``out_dir`` (config.json + model.safetensors) that transformers' AutoModelForCausalLM
    loads as LlamaForCausalLM / Qwen2ForCausalLM."""
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors_dir(out_dir, text_config_to_hf(cfg), decoder_params_to_hf(cfg, params))
