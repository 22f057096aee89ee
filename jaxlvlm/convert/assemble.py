"""A LLaVA from two separate towers: a vision encoder, a language model, and a fresh connector.

This is where LLaVA's stage 1 starts (a CLIP/SigLIP checkpoint and an LLM checkpoint, not a LLaVA one):

- The tokenizer gets an ``<image>`` token when it lacks one (a special token, so text never splits
  into it). The vocabulary grows to ``len(tokenizer)`` rounded up to a multiple of 64, so the table
  shards evenly (transformers' llava-1.5-hf pads its 32002 tokens to 32064 the same way).
- Grown rows, in the input embedding and, when untied, in the LM head, start at the mean of the
  existing rows of that matrix, as LLaVA's ``smart_tokenizer_and_embedding_resize`` does: the new
  token starts as an "average" token, its logit as an average logit, instead of a random outlier.
  The ``<image>`` row is never read as an input (image features replace it); padding rows are never
  targets.
- The connector (``mlp2x_gelu`` by default) is new. Its weights and biases are drawn like PyTorch's
  ``nn.Linear`` default that LLaVA's projector gets: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
- Features come from the second-to-last vision layer (LLaVA-1.5's ``mm_vision_select_layer -2``);
  CLIP drops its class token ('default'), SigLIP has none and keeps every patch ('full').
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxlvlm.convert.hf_io import ConversionError
from jaxlvlm.models.config import LVLMConfig, TextConfig, VisionConfig

IMAGE_TOKEN = "<image>"
VOCAB_MULTIPLE = 64


def round_vocab(n: int, multiple: int = VOCAB_MULTIPLE) -> int:
    """``n`` rounded up to a multiple of ``multiple``."""
    return -(-n // multiple) * multiple


def add_image_token(tokenizer: Any) -> tuple[int, bool]:
    """Adds ``<image>`` as a special token unless the tokenizer has it -> (its id, whether added).

    The tokenizer is changed in place (transformers' ``add_special_tokens``).
    """
    tid = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if tid is not None and tid != tokenizer.unk_token_id:
        return int(tid), False
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    tid = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if tid is None or tid == tokenizer.unk_token_id:
        raise ConversionError(f"the tokenizer did not accept the special token {IMAGE_TOKEN!r}")
    return int(tid), True


def _grow_rows(table: np.ndarray, rows: int) -> np.ndarray:
    """[V, C] -> [rows, C]; the new rows are the mean of the old ones (see module docstring)."""
    extra = rows - table.shape[0]
    if extra <= 0:
        return table
    mean = table.astype(np.float64).mean(axis=0, keepdims=True).astype(table.dtype)
    return np.concatenate([table, np.repeat(mean, extra, axis=0)], axis=0)


def grow_vocab(cfg: TextConfig, params: dict[str, Any], vocab_size: int) -> tuple[TextConfig, dict]:
    """Decoder params with a vocabulary of ``vocab_size`` rows (embedding [V, C], untied head [C, V]).

    Raises ConversionError when ``vocab_size`` is smaller than the model's: rows are never dropped.
    """
    if vocab_size < cfg.vocab_size:
        raise ConversionError(
            f"the tokenizer needs {vocab_size} rows but the language model has {cfg.vocab_size}; "
            "shrinking a vocabulary would drop trained rows: use the LM's own tokenizer"
        )
    if vocab_size == cfg.vocab_size:
        return cfg, params
    out = dict(params)
    emb = np.asarray(params["embed_tokens"]["embedding"])
    out["embed_tokens"] = {"embedding": _grow_rows(emb, vocab_size)}
    if not cfg.tie_word_embeddings:
        head = np.asarray(params["lm_head"]["kernel"])  # [C, V]
        out["lm_head"] = {"kernel": np.ascontiguousarray(_grow_rows(head.T, vocab_size).T)}
    return dataclasses.replace(cfg, vocab_size=vocab_size), out


def init_connector(d_in: int, d_out: int, bias: bool, seed: int) -> dict[str, Any]:
    """A fresh mlp2x_gelu connector: linear_1 [d_in, d_out], linear_2 [d_out, d_out], float32,
    drawn U(-1/sqrt(fan_in), 1/sqrt(fan_in)) like PyTorch's nn.Linear."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, fan_in in (("linear_1", d_in), ("linear_2", d_out)):
        bound = 1.0 / np.sqrt(fan_in)
        layer = {"kernel": rng.uniform(-bound, bound, (fan_in, d_out)).astype(np.float32)}
        if bias:
            layer["bias"] = rng.uniform(-bound, bound, (d_out,)).astype(np.float32)
        out[name] = layer
    return out


def assemble_lvlm(
    vision: tuple[VisionConfig, dict[str, Any]],
    text: tuple[TextConfig, dict[str, Any]],
    image_token_id: int,
    vocab_size: int,
    *,
    vision_feature_layer: int = -2,
    select_strategy: str | None = None,
    seed: int = 0,
) -> tuple[LVLMConfig, dict[str, Any]]:
    """(vision config, params) + (text config, decoder params) -> (LVLMConfig, LVLM params).

    vocab_size: rows the decoder needs (``round_vocab(len(tokenizer))``); grown as ``grow_vocab``.
    select_strategy: None = 'default' for CLIP (drops the class token), 'full' for SigLIP.
    Both towers must share a layer layout (both scanned or both per layer).
    """
    vision_cfg, vision_params = vision
    text_cfg, text_params = text
    if not isinstance(vision_cfg, VisionConfig):
        raise ConversionError(
            f"the vision checkpoint holds a {type(vision_cfg).__name__}, expected a vision tower "
            "(CLIPVisionModel / SiglipVisionModel)"
        )
    if not isinstance(text_cfg, TextConfig):
        raise ConversionError(
            f"the language-model checkpoint holds a {type(text_cfg).__name__}, expected a causal LM "
            "(LlamaForCausalLM / Qwen2ForCausalLM or a Llama GGUF)"
        )
    if ("layers" in vision_params) != ("layers" in text_params):
        raise ConversionError(
            "the two towers have different layer layouts (one scanned, one not); convert both with "
            "the same --scan_layers"
        )
    if not -vision_cfg.num_layers <= vision_feature_layer <= vision_cfg.num_layers:
        raise ConversionError(
            f"vision_feature_layer {vision_feature_layer} is outside the tower's "
            f"{vision_cfg.num_layers} layers"
        )
    strategy = select_strategy or ("default" if vision_cfg.style == "clip" else "full")
    text_cfg, text_params = grow_vocab(text_cfg, text_params, vocab_size)
    cfg = LVLMConfig(
        vision=vision_cfg,
        text=text_cfg,
        connector="mlp2x_gelu",
        projector_bias=True,
        image_token_id=int(image_token_id),
        vision_feature_layer=int(vision_feature_layer),
        vision_feature_select_strategy=strategy,
    )
    params = {
        "vision": vision_params,
        "connector": init_connector(vision_cfg.hidden_size, text_cfg.hidden_size, True, seed),
        "llm": text_params,
    }
    return cfg, params
