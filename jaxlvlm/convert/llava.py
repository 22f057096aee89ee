"""LlavaForConditionalGeneration (Hugging Face) <-> LVLM params, both ways.

Key layouts read (the decoder, vision tower and projector prefixes):
  saved by transformers 5.x:  language_model.model.* , language_model.lm_head.weight , vision_tower.* ,
                              multi_modal_projector.*
  older checkpoints:          the same with vision_tower.vision_model.*
  in-memory names:            model.language_model.* , lm_head.weight , model.vision_tower.* ,
                              model.multi_modal_projector.*
Export writes the first layout, which transformers loads.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxlvlm.convert.hf_io import ConversionError, TensorSource
from jaxlvlm.convert.llama import (
    decoder_params_from_hf,
    decoder_params_to_hf,
    text_config_from_hf,
    text_config_to_hf,
)
from jaxlvlm.convert.vision import (
    vision_config_from_hf,
    vision_config_to_hf,
    vision_params_from_hf,
    vision_params_to_hf,
    vision_take_unused,
)
from jaxlvlm.models.config import LVLMConfig


@dataclasses.dataclass(frozen=True)
class LlavaLayout:
    """Where the parts of a LLaVA checkpoint live."""

    llm_prefix: str
    lm_head_key: str
    vision_prefix: str
    projector_prefix: str


SAVED_LAYOUT = LlavaLayout(
    "language_model.model.",
    "language_model.lm_head.weight",
    "vision_tower.",
    "multi_modal_projector.",
)
IN_MEMORY_LAYOUT = LlavaLayout(
    "model.language_model.", "lm_head.weight", "model.vision_tower.", "model.multi_modal_projector."
)


def detect_layout(src: TensorSource) -> LlavaLayout:
    """The layout of ``src``'s keys (the 'vision_model.' sub-prefix is found by the vision mapping)."""
    for layout in (SAVED_LAYOUT, IN_MEMORY_LAYOUT):
        if f"{layout.llm_prefix}embed_tokens.weight" in src:
            return layout
    raise ConversionError(
        f"{src.origin}: not a LLaVA key layout: no 'language_model.model.embed_tokens.weight' nor "
        f"'model.language_model.embed_tokens.weight' (first keys: {sorted(src.keys())[:5]})"
    )


# transformers' LlamaConfig / Qwen2Config defaults for the structural fields: LLaVA configs (e.g.
# llava-1.5) often store only the fields that differ from them in text_config.
_TEXT_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": dict(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
    ),
    "qwen2": dict(
        vocab_size=151936,
        hidden_size=4096,
        intermediate_size=22016,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
    ),
}


def _text_defaults(text: dict[str, Any]) -> dict[str, Any]:
    model_type = text.get("model_type", "llama")
    defaults = _TEXT_DEFAULTS.get(model_type, {})
    return {
        "model_type": model_type,
        **defaults,
        **{k: v for k, v in text.items() if v is not None},
    }


def llava_config_from_hf(hf: dict[str, Any], tied: bool | None = None) -> LVLMConfig:
    """config.json of LlavaForConditionalGeneration -> LVLMConfig.

    tied: whether the checkpoint lacks an lm_head (the read-out is the embedding table); None = from
    config.json's tie_word_embeddings.
    """
    if "text_config" not in hf or "vision_config" not in hf:
        raise ConversionError("LLaVA config.json needs 'text_config' and 'vision_config'")
    text = text_config_from_hf(_text_defaults(hf["text_config"]))
    if tied is None:
        tied = bool(
            hf.get("tie_word_embeddings", hf["text_config"].get("tie_word_embeddings", False))
        )
    text = dataclasses.replace(text, tie_word_embeddings=tied)
    vision = vision_config_from_hf(hf["vision_config"])
    layer = hf.get("vision_feature_layer", -2)
    if not isinstance(layer, int):
        raise ConversionError(
            f"vision_feature_layer {layer}: features from several layers are not supported; use one int"
        )
    image_token_id = hf.get("image_token_id", hf.get("image_token_index", 32000))
    act = hf.get("projector_hidden_act", "gelu")
    return LVLMConfig(
        vision=vision,
        text=text,
        connector="mlp2x_gelu",
        connector_kwargs=() if act == "gelu" else (("act", act),),
        projector_bias=bool(hf.get("multimodal_projector_bias", True)),
        image_token_id=int(image_token_id),
        vision_feature_layer=int(layer),
        vision_feature_select_strategy=hf.get("vision_feature_select_strategy", "default"),
    )


def llava_config_to_hf(cfg: LVLMConfig) -> dict[str, Any]:
    """LVLMConfig -> config.json of LlavaForConditionalGeneration (mlp2x_gelu connector only)."""
    if cfg.connector != "mlp2x_gelu":
        raise ConversionError(
            f"connector '{cfg.connector}' has no LLaVA equivalent; only 'mlp2x_gelu' exports to "
            "LlavaForConditionalGeneration"
        )
    text = text_config_to_hf(cfg.text)
    text.pop("architectures", None)
    vision = vision_config_to_hf(cfg.vision)
    vision.pop("architectures", None)
    return {
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "text_config": text,
        "vision_config": vision,
        "image_token_index": cfg.image_token_id,
        "image_seq_length": cfg.image_tokens_per_image,
        "vision_feature_layer": cfg.vision_feature_layer,
        "vision_feature_select_strategy": cfg.vision_feature_select_strategy,
        "projector_hidden_act": dict(cfg.connector_kwargs).get("act", "gelu"),
        "multimodal_projector_bias": cfg.projector_bias,
        "tie_word_embeddings": cfg.text.tie_word_embeddings,
    }


def _projector_from_hf(cfg: LVLMConfig, src: TensorSource, p: str) -> dict[str, Any]:
    dv, c = cfg.vision.hidden_size, cfg.text.hidden_size
    out: dict[str, Any] = {}
    for name, (d_in, d_out) in (("linear_1", (dv, c)), ("linear_2", (c, c))):
        out[name] = {"kernel": src.take(f"{p}{name}.weight", (d_out, d_in)).T}
        if cfg.projector_bias:
            out[name]["bias"] = src.take(f"{p}{name}.bias", (d_out,))
    return out


def llava_params_from_hf(
    cfg: LVLMConfig, src: TensorSource, scan: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """Reads a LLaVA checkpoint -> (LVLM params {'vision', 'connector', 'llm'} (numpy), unused keys).

    The unused keys are the tensors LLaVA never reads (see ``vision_take_unused``); every other tensor
    must be mapped.
    """
    layout = detect_layout(src)
    params = {
        "vision": vision_params_from_hf(cfg.vision, src, layout.vision_prefix, scan=scan),
        "connector": _projector_from_hf(cfg, src, layout.projector_prefix),
        "llm": decoder_params_from_hf(
            cfg.text, src, prefix=layout.llm_prefix, lm_head_key=layout.lm_head_key, scan=scan
        ),
    }
    unused = vision_take_unused(cfg.vision, src, layout.vision_prefix)
    return params, unused


def llava_params_to_hf(cfg: LVLMConfig, params: dict[str, Any]) -> dict[str, np.ndarray]:
    """LVLM params -> HF tensors in the layout transformers saves (SAVED_LAYOUT)."""
    layout = SAVED_LAYOUT
    out = vision_params_to_hf(cfg.vision, params["vision"], prefix=layout.vision_prefix)
    for name in ("linear_1", "linear_2"):
        layer = params["connector"][name]
        out[f"{layout.projector_prefix}{name}.weight"] = np.ascontiguousarray(
            np.asarray(layer["kernel"], np.float32).T
        )
        if cfg.projector_bias:
            out[f"{layout.projector_prefix}{name}.bias"] = np.asarray(layer["bias"], np.float32)
    out.update(
        decoder_params_to_hf(
            cfg.text, params["llm"], prefix=layout.llm_prefix, lm_head_key=layout.lm_head_key
        )
    )
    return out
