"""Hugging Face BertModel (safetensors) -> BertEncoder params of jaxlvlm.models.sentence_encoder.

PyTorch Linear weights are [out, in]; Flax Dense kernels are [in, out], hence the transposes. The
pooler (unused by sentence embeddings) and the position_ids buffer are skipped; any other key left
over is an error, so a different architecture is not silently half-loaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxlvlm.convert.hf_io import ConversionError, TensorSource, read_config, read_safetensors_dir
from jaxlvlm.models.sentence_encoder import BertConfig

_SKIPPED_PREFIXES = ("pooler.", "cls.", "embeddings.position_ids")


def bert_config_from_hf(cfg: dict[str, Any], origin: str = "config.json") -> BertConfig:
    """BertConfig from a BertModel config.json dict; other model types are an error."""
    if cfg.get("model_type") != "bert":
        raise ConversionError(
            f"{origin}: model_type '{cfg.get('model_type')}' is not supported by the sentence "
            "encoder; supported: ['bert'] (BertModel, e.g. sentence-transformers/all-MiniLM-L6-v2)"
        )
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(
            f"{origin}: position_embedding_type '{cfg['position_embedding_type']}' is not "
            "supported; only 'absolute'"
        )
    return BertConfig(
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=int(cfg["hidden_size"]),
        intermediate_size=int(cfg["intermediate_size"]),
        num_layers=int(cfg["num_hidden_layers"]),
        num_heads=int(cfg["num_attention_heads"]),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 512)),
        type_vocab_size=int(cfg.get("type_vocab_size", 2)),
        layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
        hidden_act=str(cfg.get("hidden_act", "gelu")),
        pad_token_id=int(cfg.get("pad_token_id", 0) or 0),
    )


def _strip_prefix(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """BertFor* checkpoints nest the encoder under 'bert.'; BertModel has no prefix."""
    if any(k.startswith("bert.") for k in tensors):
        return {k[len("bert.") :]: v for k, v in tensors.items() if k.startswith("bert.")}
    return dict(tensors)


def bert_params_from_hf(
    tensors: dict[str, np.ndarray], config: BertConfig, origin: str = "checkpoint"
) -> dict[str, Any]:
    """BertEncoder params from HF BertModel tensors (numpy, float32) with shape checks.

    Returns a plain nested dict of numpy float32 arrays, ready for ``{'params': params}``.
    """
    src = TensorSource(_strip_prefix(tensors), origin)
    d, f = config.hidden_size, config.intermediate_size

    def dense(prefix: str, d_in: int, d_out: int) -> dict[str, np.ndarray]:
        return {
            "kernel": src.take(f"{prefix}.weight", (d_out, d_in)).T.astype(np.float32),
            "bias": src.take(f"{prefix}.bias", (d_out,)).astype(np.float32),
        }

    def norm(prefix: str) -> dict[str, np.ndarray]:
        return {
            "scale": src.take(f"{prefix}.weight", (d,)).astype(np.float32),
            "bias": src.take(f"{prefix}.bias", (d,)).astype(np.float32),
        }

    def embed(key: str, rows: int) -> dict[str, np.ndarray]:
        return {"embedding": src.take(key, (rows, d)).astype(np.float32)}

    params: dict[str, Any] = {
        "word_embeddings": embed("embeddings.word_embeddings.weight", config.vocab_size),
        "position_embeddings": embed(
            "embeddings.position_embeddings.weight", config.max_position_embeddings
        ),
        "token_type_embeddings": embed(
            "embeddings.token_type_embeddings.weight", config.type_vocab_size
        ),
        "embeddings_norm": norm("embeddings.LayerNorm"),
    }
    for i in range(config.num_layers):
        p = f"encoder.layer.{i}"
        params[f"layer_{i}"] = {
            "query": dense(f"{p}.attention.self.query", d, d),
            "key": dense(f"{p}.attention.self.key", d, d),
            "value": dense(f"{p}.attention.self.value", d, d),
            "attention_output": dense(f"{p}.attention.output.dense", d, d),
            "attention_norm": norm(f"{p}.attention.output.LayerNorm"),
            "intermediate": dense(f"{p}.intermediate.dense", d, f),
            "output": dense(f"{p}.output.dense", f, d),
            "output_norm": norm(f"{p}.output.LayerNorm"),
        }
    leftover = [k for k in src.unused() if not k.startswith(_SKIPPED_PREFIXES)]
    if leftover:
        raise ConversionError(
            f"{origin}: {len(leftover)} tensors are not part of a {config.num_layers}-layer "
            f"BertModel, first: {leftover[:3]}; check num_hidden_layers in config.json"
        )
    return params


def load_bert(model_dir: str) -> tuple[BertConfig, dict[str, Any]]:
    """(BertConfig, params) from an HF BertModel directory (config.json + *.safetensors)."""
    config = bert_config_from_hf(read_config(model_dir), origin=f"{model_dir}/config.json")
    tensors = read_safetensors_dir(model_dir)
    return config, bert_params_from_hf(tensors, config, origin=model_dir)
