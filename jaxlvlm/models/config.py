"""Model configuration: plain frozen dataclasses passed down to the modules.

Modules never read ml_collections configs or globals; the runner turns the user's config into these
values (``lvlm_config_from_dict``) and the converters produce them from Hugging Face ``config.json``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

VisionStyle = Literal["clip", "siglip"]
TextArch = Literal["llama", "qwen2"]


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """ViT vision tower.

    style 'clip': class token, pre-layernorm, quick_gelu, patch conv without bias.
    style 'siglip': no class token, gelu (tanh), post-layernorm, patch conv with bias.
    """

    style: VisionStyle = "clip"
    image_size: int = 32
    patch_size: int = 8
    num_channels: int = 3
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    layer_norm_eps: float = 1e-5
    hidden_act: str = (
        ""  # '' = the style's default ('quick_gelu' for clip, 'gelu_pytorch_tanh' for siglip)
    )

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_positions(self) -> int:
        return self.num_patches + (1 if self.style == "clip" else 0)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def act(self) -> str:
        if self.hidden_act:
            return self.hidden_act
        return "quick_gelu" if self.style == "clip" else "gelu_pytorch_tanh"


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """Decoder-only LLM of the Llama family (Llama 2/3, Vicuna, SmolLM2) or Qwen2 (q/k/v bias)."""

    arch: TextArch = "llama"
    vocab_size: int = 512
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 0  # 0 = hidden_size // num_heads
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    # llama3 rope scaling; None = no scaling. Keys: factor, low_freq_factor, high_freq_factor,
    # original_max_position_embeddings (the rope_parameters / rope_scaling of config.json).
    rope_scaling: tuple[tuple[str, Any], ...] | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # True for qwen2 (q/k/v bias)
    mlp_bias: bool = False
    hidden_act: str = "silu"

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def rope_scaling_dict(self) -> dict[str, Any] | None:
        return dict(self.rope_scaling) if self.rope_scaling is not None else None


@dataclasses.dataclass(frozen=True)
class LVLMConfig:
    """A LLaVA-style model: vision tower -> connector -> decoder LLM.

    image_token_id: the placeholder id; a sample holds it once per image feature (transformers' LLaVA
    convention), so a sample with n images holds n * ``image_tokens_per_image`` placeholders.
    vision_feature_layer: index into the tower's hidden states (embeddings output is index 0; -2 =
    the output of the second-to-last layer, LLaVA-1.5's choice).
    vision_feature_select_strategy: 'default' drops the class token (CLIP), 'full' keeps all.
    """

    vision: VisionConfig = dataclasses.field(default_factory=VisionConfig)
    text: TextConfig = dataclasses.field(default_factory=TextConfig)
    connector: str = "mlp2x_gelu"  # a name in the connector registry ('linear', 'mlp2x_gelu', ...)
    connector_kwargs: tuple[tuple[str, Any], ...] = ()
    projector_bias: bool = True
    image_token_id: int = 3
    vision_feature_layer: int = -2
    vision_feature_select_strategy: Literal["default", "full"] = "default"

    @property
    def image_tokens_per_image(self) -> int:
        """Number of placeholder tokens (= connector outputs) per image."""
        # transformers drops the first token under 'default' whatever the tower: CLIP's class token,
        # but a real patch for SigLIP (SigLIP LLaVAs use 'full').
        n = self.vision.num_positions
        if self.vision_feature_select_strategy == "default":
            n -= 1
        return n


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """How the model runs, not what it is: dtypes, layer scan, remat and the attention backend."""

    param_dtype: str = "float32"
    compute_dtype: str = "float32"  # 'bfloat16' on accelerators
    scan_layers: bool = False
    remat_vision: str = "none"  # 'none' | 'full' | 'dots' (save matmul outputs)
    remat_text: str = "none"
    attention_backend: str = "xla"  # 'xla' | 'cudnn' (jax.nn.dot_product_attention on GPU)
    # 'xla' causal attention in this many query blocks, each against its key prefix only (exact;
    # models/attention.py: causal_query_blocks). 1 = unblocked. 4 made the small CPU train step
    # 1.043x faster, paired interval [1.011, 1.073] (BENCHMARKS.md, question 7); not measured on
    # GPU or TPU, where it is the same arithmetic with fewer products.
    attention_query_blocks: int = 4
    # 'xla' attention's backward: True, the hand-written flash-attention one (models/attention_core.py),
    # or JAX's autodiff of the same forward. Off: on the small CPU step it was level with autodiff,
    # paired speed-up 0.996x [0.966, 1.027] over 20 rounds (BENCHMARKS.md, question 11).
    attention_custom_vjp: bool = False


def _from_dict(cls, d: dict[str, Any] | None):
    if d is None:
        return cls()
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise KeyError(f"{cls.__name__}: unknown keys {unknown}; known keys are {sorted(names)}")
    kwargs = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("rope_scaling", "connector_kwargs"):
            v = tuple(sorted(v.items()))
        kwargs[k] = v
    return cls(**kwargs)


def lvlm_config_from_dict(d: dict[str, Any]) -> LVLMConfig:
    """Builds an LVLMConfig from nested plain dicts ({'vision': {...}, 'text': {...}, ...})."""
    d = dict(d)
    vision = _from_dict(VisionConfig, d.pop("vision", None))
    text = _from_dict(TextConfig, d.pop("text", None))
    top = _from_dict(LVLMConfig, d)
    return dataclasses.replace(top, vision=vision, text=text)


def runtime_config_from_dict(d: dict[str, Any] | None) -> RuntimeConfig:
    return _from_dict(RuntimeConfig, d)


ModelConfig = LVLMConfig | TextConfig | VisionConfig
_KINDS: dict[str, type] = {"lvlm": LVLMConfig, "text": TextConfig, "vision": VisionConfig}


def _plain(cfg) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            v = _plain(v)
        elif f.name in ("rope_scaling", "connector_kwargs") and v is not None:
            v = dict(v)
        out[f.name] = v
    return out


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """A model config as JSON-able nested dicts, tagged with ``kind`` ('lvlm' | 'text' | 'vision')."""
    kind = next((k for k, cls in _KINDS.items() if isinstance(cfg, cls)), None)
    if kind is None:
        raise TypeError(f"not a model config: {type(cfg).__name__}; expected one of {list(_KINDS)}")
    return {"kind": kind, **_plain(cfg)}


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    """Inverse of ``config_to_dict``; an untagged dict is read as an LVLMConfig."""
    d = dict(d)
    kind = d.pop("kind", "lvlm")
    if kind not in _KINDS:
        raise KeyError(f"unknown model config kind '{kind}'; expected one of {list(_KINDS)}")
    if kind == "lvlm":
        return lvlm_config_from_dict(d)
    return _from_dict(_KINDS[kind], d)
