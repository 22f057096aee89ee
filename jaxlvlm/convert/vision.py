"""CLIPVisionModel / SiglipVisionModel (Hugging Face) <-> VisionTower params, both ways.

Layer tensors are read per layer and stacked on a leading axis when the model scans its layers.
Tensors LLaVA never uses are reported, not dropped in silence: CLIP's post-layernorm (it only feeds the
pooled output) and SigLIP's attention-pooling head. Export writes CLIP's post-layernorm as the identity
(weight 1, bias 0) and SigLIP without its head (``vision_use_head: false``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxlvlm.convert.hf_io import ConversionError, TensorSource
from jaxlvlm.models.config import VisionConfig

# Defaults of transformers' config classes, for config.json files that leave fields out.
_HF_DEFAULTS: dict[str, dict[str, Any]] = {
    "clip_vision_model": dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_channels=3,
        image_size=224,
        patch_size=32,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    ),
    "siglip_vision_model": dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_channels=3,
        image_size=224,
        patch_size=16,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
    ),
}
_STYLE = {"clip_vision_model": "clip", "siglip_vision_model": "siglip"}
_ARCH = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel"}
_MODEL_TYPE = {"clip": "clip_vision_model", "siglip": "siglip_vision_model"}


def vision_config_from_hf(hf: dict[str, Any]) -> VisionConfig:
    """config.json of a CLIPVisionModel / SiglipVisionModel (or a LLaVA ``vision_config``) -> VisionConfig."""
    model_type = hf.get("model_type")
    if model_type in ("clip", "siglip") and "vision_config" in hf:
        hf, model_type = hf["vision_config"], f"{model_type}_vision_model"
    if model_type not in _HF_DEFAULTS:
        raise ConversionError(
            f"vision model_type '{model_type}' is not supported; supported: {sorted(_HF_DEFAULTS)}"
        )
    d = {**_HF_DEFAULTS[model_type], **{k: v for k, v in hf.items() if v is not None}}
    style = _STYLE[model_type]
    default_act = _HF_DEFAULTS[model_type]["hidden_act"]
    return VisionConfig(
        style=style,
        image_size=int(d["image_size"]),
        patch_size=int(d["patch_size"]),
        num_channels=int(d["num_channels"]),
        hidden_size=int(d["hidden_size"]),
        intermediate_size=int(d["intermediate_size"]),
        num_layers=int(d["num_hidden_layers"]),
        num_heads=int(d["num_attention_heads"]),
        layer_norm_eps=float(d["layer_norm_eps"]),
        hidden_act="" if d["hidden_act"] == default_act else d["hidden_act"],
    )


def vision_config_to_hf(cfg: VisionConfig) -> dict[str, Any]:
    """VisionConfig -> config.json dict that transformers' CLIPVisionModel / SiglipVisionModel loads."""
    d: dict[str, Any] = dict(
        architectures=[_ARCH[cfg.style]],
        model_type=_MODEL_TYPE[cfg.style],
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_channels=cfg.num_channels,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        hidden_act=cfg.act,
        layer_norm_eps=cfg.layer_norm_eps,
        attention_dropout=0.0,
    )
    if cfg.style == "siglip":
        d["vision_use_head"] = False
    return d


def _ln(src: TensorSource, key: str, d: int) -> dict[str, np.ndarray]:
    return {"scale": src.take(f"{key}.weight", (d,)), "bias": src.take(f"{key}.bias", (d,))}


def _layer_from_hf(cfg: VisionConfig, src: TensorSource, p: str) -> dict[str, Any]:
    d, f, h, hd = cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.head_dim
    attn = {}
    for name in ("q_proj", "k_proj", "v_proj"):
        w = src.take(f"{p}self_attn.{name}.weight", (h * hd, d))
        b = src.take(f"{p}self_attn.{name}.bias", (h * hd,))
        attn[name] = {"kernel": w.T.reshape(d, h, hd), "bias": b.reshape(h, hd)}
    w = src.take(f"{p}self_attn.out_proj.weight", (d, h * hd))
    attn["out_proj"] = {
        "kernel": w.T.reshape(h, hd, d),
        "bias": src.take(f"{p}self_attn.out_proj.bias", (d,)),
    }
    return {
        "layer_norm1": _ln(src, f"{p}layer_norm1", d),
        "self_attn": attn,
        "layer_norm2": _ln(src, f"{p}layer_norm2", d),
        "mlp": {
            "fc1": {
                "kernel": src.take(f"{p}mlp.fc1.weight", (f, d)).T,
                "bias": src.take(f"{p}mlp.fc1.bias", (f,)),
            },
            "fc2": {
                "kernel": src.take(f"{p}mlp.fc2.weight", (d, f)).T,
                "bias": src.take(f"{p}mlp.fc2.bias", (d,)),
            },
        },
    }


def vision_prefix(src: TensorSource, prefix: str = "") -> str:
    """The key prefix of the tower: ``prefix`` or, for older checkpoints, ``prefix + 'vision_model.'``."""
    if f"{prefix}embeddings.patch_embedding.weight" in src:
        return prefix
    if f"{prefix}vision_model.embeddings.patch_embedding.weight" in src:
        return f"{prefix}vision_model."
    raise ConversionError(
        f"{src.origin}: no vision tower under '{prefix}' (looked for "
        f"'{prefix}embeddings.patch_embedding.weight' and "
        f"'{prefix}vision_model.embeddings.patch_embedding.weight')"
    )


def vision_params_from_hf(
    cfg: VisionConfig, src: TensorSource, prefix: str = "", scan: bool = False
) -> dict[str, Any]:
    """Reads the tower under ``prefix`` (layout found by ``vision_prefix``) -> VisionTower params (numpy).

    Mis-shaped or missing tensors raise ConversionError naming the key and both shapes.
    """
    p = vision_prefix(src, prefix)
    d, c, ps = cfg.hidden_size, cfg.num_channels, cfg.patch_size
    w = src.take(f"{p}embeddings.patch_embedding.weight", (d, c, ps, ps))
    emb: dict[str, np.ndarray] = {
        # [D, C, P, P] -> [P, P, C, D] -> [P*P*C, D], the order of the patch reshape in ViTEmbeddings.
        "patch_embedding": w.transpose(2, 3, 1, 0).reshape(ps * ps * c, d),
        "position_embedding": src.take(
            f"{p}embeddings.position_embedding.weight", (cfg.num_positions, d)
        ),
    }
    params: dict[str, Any] = {"embeddings": emb}
    if cfg.style == "clip":
        emb["class_embedding"] = src.take(f"{p}embeddings.class_embedding", (d,))
        params["pre_layrnorm"] = _ln(src, f"{p}pre_layrnorm", d)
    else:
        emb["patch_bias"] = src.take(f"{p}embeddings.patch_embedding.bias", (d,))
        params["post_layernorm"] = _ln(src, f"{p}post_layernorm", d)
    layers = [_layer_from_hf(cfg, src, f"{p}encoder.layers.{i}.") for i in range(cfg.num_layers)]
    if scan:
        params["layers"] = {"layer": _stack(layers)}
    else:
        for i, layer in enumerate(layers):
            params[f"layers_{i}"] = layer
    return params


def vision_take_unused(cfg: VisionConfig, src: TensorSource, prefix: str = "") -> list[str]:
    """Marks as used, and returns, the tower's tensors that the VisionTower has no use for.

    CLIP: post_layernorm (pooled output only). SigLIP: the attention-pooling ``head.*``. Both: the
    ``embeddings.position_ids`` buffer some checkpoints carry.
    """
    p = vision_prefix(src, prefix)
    names = [f"{p}embeddings.position_ids"]
    if cfg.style == "clip":
        names += [f"{p}post_layernorm.weight", f"{p}post_layernorm.bias"]
    else:
        names += [k for k in src.keys() if k.startswith(f"{p}head.")]
    taken = []
    for k in names:
        if k in src:
            src.take(k)
            taken.append(k)
    return sorted(taken)


def _stack(trees: list[Any]) -> Any:
    if isinstance(trees[0], dict):
        return {k: _stack([t[k] for t in trees]) for k in trees[0]}
    return np.stack(trees, axis=0)


def _unstack(tree: Any, n: int) -> list[Any]:
    if isinstance(tree, dict):
        parts = {k: _unstack(v, n) for k, v in tree.items()}
        return [{k: parts[k][i] for k in parts} for i in range(n)]
    return [tree[i] for i in range(n)]


def vision_layers(cfg: VisionConfig, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-layer param dicts of a VisionTower tree, scanned (``layers.layer``) or not (``layers_{i}``)."""
    if "layers" in params:
        return _unstack(params["layers"]["layer"], cfg.num_layers)
    return [params[f"layers_{i}"] for i in range(cfg.num_layers)]


def vision_params_to_hf(
    cfg: VisionConfig, params: dict[str, Any], prefix: str = ""
) -> dict[str, np.ndarray]:
    """VisionTower params -> HF tensors (transformers' current key layout, no ``vision_model.``)."""
    a = lambda x: np.asarray(x, dtype=np.float32)
    d, c, ps = cfg.hidden_size, cfg.num_channels, cfg.patch_size
    h, hd = cfg.num_heads, cfg.head_dim
    emb = params["embeddings"]
    out = {
        f"{prefix}embeddings.patch_embedding.weight": a(emb["patch_embedding"])
        .reshape(ps, ps, c, d)
        .transpose(3, 2, 0, 1),
        f"{prefix}embeddings.position_embedding.weight": a(emb["position_embedding"]),
    }
    if cfg.style == "clip":
        out[f"{prefix}embeddings.class_embedding"] = a(emb["class_embedding"])
        out[f"{prefix}pre_layrnorm.weight"] = a(params["pre_layrnorm"]["scale"])
        out[f"{prefix}pre_layrnorm.bias"] = a(params["pre_layrnorm"]["bias"])
        out[f"{prefix}post_layernorm.weight"] = np.ones((d,), np.float32)
        out[f"{prefix}post_layernorm.bias"] = np.zeros((d,), np.float32)
    else:
        out[f"{prefix}embeddings.patch_embedding.bias"] = a(emb["patch_bias"])
        out[f"{prefix}post_layernorm.weight"] = a(params["post_layernorm"]["scale"])
        out[f"{prefix}post_layernorm.bias"] = a(params["post_layernorm"]["bias"])
    for i, layer in enumerate(vision_layers(cfg, params)):
        p = f"{prefix}encoder.layers.{i}."
        for ln in ("layer_norm1", "layer_norm2"):
            out[f"{p}{ln}.weight"] = a(layer[ln]["scale"])
            out[f"{p}{ln}.bias"] = a(layer[ln]["bias"])
        attn = layer["self_attn"]
        for name in ("q_proj", "k_proj", "v_proj"):
            out[f"{p}self_attn.{name}.weight"] = a(attn[name]["kernel"]).reshape(d, h * hd).T
            out[f"{p}self_attn.{name}.bias"] = a(attn[name]["bias"]).reshape(h * hd)
        out[f"{p}self_attn.out_proj.weight"] = a(attn["out_proj"]["kernel"]).reshape(h * hd, d).T
        out[f"{p}self_attn.out_proj.bias"] = a(attn["out_proj"]["bias"])
        for fc in ("fc1", "fc2"):
            out[f"{p}mlp.{fc}.weight"] = a(layer["mlp"][fc]["kernel"]).T
            out[f"{p}mlp.{fc}.bias"] = a(layer["mlp"][fc]["bias"])
    return {k: np.ascontiguousarray(v) for k, v in out.items()}
