"""GGUF (llama.cpp) files of Llama-architecture models -> a Hugging Face config dict and tensors.

The output is what a ``LlamaForCausalLM`` directory would hold: a config.json-style dict and float32
tensors under HF key names in HF orientation ([out, in]), so the ordinary Llama converter takes it
from there. Quantised tensors are dequantised with ``gguf.quants.dequantize`` (pure numpy, no torch).

llama.cpp's converter permutes the rows of the Q and K projections so that rotary pairs (i, i + d/2)
of HF's rotate-half layout become adjacent (i.e. interleaved) pairs; ``unpermute_qk`` undoes that.
"""

from __future__ import annotations

from typing import Any

import gguf
import numpy as np

from jaxlvlm.convert.hf_io import ConversionError
from jaxlvlm.gguf_reader import gguf_metadata, open_gguf  # noqa: F401 - re-exported

SUPPORTED_ARCHITECTURES = ("llama",)

# GGUF per-layer tensor name -> HF per-layer key (both without the layer prefix).
_LAYER_KEYS = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.bias": "self_attn.o_proj.bias",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GLOBAL_KEYS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
# Tensors llama.cpp may store that carry no weights HF needs (precomputed rotary tables).
_IGNORED_SUFFIXES = ("attn_rot_embd",)


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undoes llama.cpp's Q/K row permutation.

    Args:
      w: [n_heads * head_dim, d_in] (or a bias [n_heads * head_dim]) as stored in the GGUF file,
        where each head's rows are ordered (pair index, 2) interleaved.
    Returns:
      the same shape with each head's rows in HF's rotate-half order (2, pair index).
    """
    rows = w.shape[0]
    if rows % (2 * n_heads):
        raise ConversionError(
            f"Q/K projection with {rows} rows does not split into {n_heads} heads"
        )
    half = rows // n_heads // 2
    return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _require(meta: dict[str, Any], key: str, path: str):
    if key not in meta:
        raise ConversionError(
            f"{path}: GGUF metadata key '{key}' is missing; the file is incomplete"
        )
    return meta[key]


def hf_config_from_gguf_metadata(
    meta: dict[str, Any], path: str, has_output: bool, vocab_rows: int
) -> dict[str, Any]:
    """A LlamaForCausalLM config.json dict from GGUF metadata.

    Args:
      meta: gguf_metadata(reader).
      path: the file, for error messages.
      has_output: whether the file holds ``output.weight`` (else the embeddings are tied).
      vocab_rows: rows of ``token_embd.weight`` (the vocabulary size when metadata lacks it).
    """
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ConversionError(
            f"{path}: GGUF architecture '{arch}' is not supported; supported: "
            f"{list(SUPPORTED_ARCHITECTURES)} (Llama-family models such as SmolLM2, Llama 2/3, Vicuna)"
        )
    scaling = meta.get(f"{arch}.rope.scaling.type")
    if scaling not in (None, "none"):
        raise ConversionError(
            f"{path}: RoPE scaling '{scaling}' in a GGUF file is not supported; convert the original "
            "Hugging Face checkpoint instead"
        )
    hidden = int(_require(meta, f"{arch}.embedding_length", path))
    heads = int(_require(meta, f"{arch}.attention.head_count", path))
    kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", heads))
    head_dim = int(meta.get(f"{arch}.attention.key_length", hidden // heads))
    rope_theta = float(meta.get(f"{arch}.rope.freq_base", 10000.0))
    vocab = int(meta.get(f"{arch}.vocab_size", vocab_rows))
    cfg: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": int(_require(meta, f"{arch}.feed_forward_length", path)),
        "num_hidden_layers": int(_require(meta, f"{arch}.block_count", path)),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": int(meta.get(f"{arch}.context_length", 2048)),
        "rms_norm_eps": float(meta.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
        "tie_word_embeddings": not has_output,
        "attention_bias": False,
        "mlp_bias": False,
    }
    for hf_key, gguf_key in (
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token_id", "tokenizer.ggml.eos_token_id"),
        ("pad_token_id", "tokenizer.ggml.padding_token_id"),
    ):
        if gguf_key in meta:
            cfg[hf_key] = int(meta[gguf_key])
    return cfg


def _hf_key(name: str, path: str) -> str | None:
    """HF key for GGUF tensor ``name``; None for tensors with nothing to carry over."""
    if name in _GLOBAL_KEYS:
        return _GLOBAL_KEYS[name]
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit():
        if parts[2].split(".")[0] in _IGNORED_SUFFIXES:
            return None
        if parts[2] in _LAYER_KEYS:
            return f"model.layers.{parts[1]}.{_LAYER_KEYS[parts[2]]}"
    if name == "rope_freqs.weight":
        raise ConversionError(
            f"{path}: tensor 'rope_freqs.weight' (llama3-style RoPE frequency scaling) is not "
            "supported from GGUF; convert the original Hugging Face checkpoint instead"
        )
    raise ConversionError(
        f"{path}: unexpected GGUF tensor '{name}' for a Llama model; known per-layer names are "
        f"{sorted(_LAYER_KEYS)} under 'blk.N.' and {sorted(_GLOBAL_KEYS)}"
    )


def dequantized_tensor(tensor) -> np.ndarray:
    """A GGUF tensor as float32 numpy in HF orientation (GGUF lists dims innermost-first)."""

    arr = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    # dequantize returns the row-major array whose last axis is GGUF's first dim, i.e. [out, in].
    shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
    return np.ascontiguousarray(arr.reshape(shape), dtype=np.float32)


def gguf_to_hf(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Reads a Llama-architecture GGUF file as a Hugging Face LlamaForCausalLM checkpoint.

    Args:
      path: a .gguf file (any quantisation the ``gguf`` package can dequantise).
    Returns:
      (config, tensors): a config.json dict (vocab, hidden, layers, heads, kv heads, head_dim, rope
      theta, rms eps, tie_word_embeddings when ``output.weight`` is absent, bos/eos/pad ids) and
      float32 arrays under HF keys (``model.embed_tokens.weight`` [V, D],
      ``model.layers.N.self_attn.q_proj.weight`` [H*hd, D], ..., ``model.norm.weight`` [D],
      ``lm_head.weight`` [V, D] only if present), Q/K rows back in HF's rotate-half order.
    Raises:
      ConversionError: missing/corrupt file, an architecture other than Llama, unknown tensors.
    """
    reader = open_gguf(path)
    meta = gguf_metadata(reader)
    by_name = {t.name: t for t in reader.tensors}
    if "token_embd.weight" not in by_name:
        arch = meta.get("general.architecture")
        if arch not in SUPPORTED_ARCHITECTURES:
            hf_config_from_gguf_metadata(meta, path, False, 0)  # raises the architecture error
        raise ConversionError(f"{path}: GGUF file has no 'token_embd.weight' tensor")
    vocab_rows = int(by_name["token_embd.weight"].shape.tolist()[-1])
    config = hf_config_from_gguf_metadata(meta, path, "output.weight" in by_name, vocab_rows)

    tensors: dict[str, np.ndarray] = {}
    for name, tensor in by_name.items():
        key = _hf_key(name, path)
        if key is None:
            continue
        arr = dequantized_tensor(tensor)
        if name.endswith(("attn_q.weight", "attn_q.bias")):
            arr = unpermute_qk(arr, config["num_attention_heads"])
        elif name.endswith(("attn_k.weight", "attn_k.bias")):
            arr = unpermute_qk(arr, config["num_key_value_heads"])
        tensors[key] = arr
    if any(k.endswith("q_proj.bias") for k in tensors):
        config["attention_bias"] = True
    _check_complete(config, tensors, path)
    return config, tensors


def _check_complete(config: dict[str, Any], tensors: dict[str, np.ndarray], path: str) -> None:
    """Every layer has all its tensors; names the first missing one otherwise."""
    per_layer = [v for k, v in _LAYER_KEYS.items() if k.endswith(".weight")]
    needed = ["model.embed_tokens.weight", "model.norm.weight"] + [
        f"model.layers.{i}.{k}" for i in range(config["num_hidden_layers"]) for k in per_layer
    ]
    missing = [k for k in needed if k not in tensors]
    if missing:
        raise ConversionError(
            f"{path}: GGUF file lacks {len(missing)} tensors needed by a "
            f"{config['num_hidden_layers']}-layer Llama, first: '{missing[0]}'"
        )
