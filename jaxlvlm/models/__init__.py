"""Flax linen modules of jaxlvlm; ``build_model`` picks the module for a model config."""

from __future__ import annotations

from flax import linen as nn

from jaxlvlm.models.config import LVLMConfig, RuntimeConfig, TextConfig, VisionConfig
from jaxlvlm.models.decoder import CausalLM
from jaxlvlm.models.lvlm import LVLM
from jaxlvlm.models.vit import VisionTower


def build_model(
    config: LVLMConfig | TextConfig | VisionConfig, runtime: RuntimeConfig | None = None
) -> nn.Module:
    """LVLMConfig -> LVLM; TextConfig -> CausalLM; VisionConfig -> VisionTower.

    ``model.apply({'params': params}, input_ids=..., attention_mask=..., pixel_values=...)`` returns
    float32 logits [B, L, V] (LVLM / CausalLM); a VisionTower takes pixel_values [M, H, W, C].
    """
    runtime = runtime or RuntimeConfig()
    if isinstance(config, LVLMConfig):
        return LVLM(config=config, runtime=runtime)
    if isinstance(config, TextConfig):
        return CausalLM(config=config, runtime=runtime)
    if isinstance(config, VisionConfig):
        return VisionTower(config=config, runtime=runtime)
    raise TypeError(
        f"build_model: expected LVLMConfig, TextConfig or VisionConfig, got {type(config).__name__}"
    )


__all__ = ["build_model"]
