"""One pre-norm decoder layer (RMSNorm -> attention -> residual, RMSNorm -> SwiGLU -> residual), in the
calling convention that nn.scan and nn.remat wrap."""

from __future__ import annotations

import jax
from flax import linen as nn

from jaxlvlm.models.attention import SelfAttention
from jaxlvlm.models.config import RuntimeConfig, TextConfig
from jaxlvlm.models.lowrank import join_layer
from jaxlvlm.models.mlp import GatedMLP
from jaxlvlm.models.norms import RMSNorm

# Modes of a layer call (a static argument): 'train' returns no k/v, 'prefill' returns the prompt's k/v,
# 'decode' reads this layer's cache slice and returns the new token's k/v.
LAYER_MODES = ("train", "prefill", "decode")


def remat_policy(name: str):
    """RuntimeConfig remat name -> jax.checkpoint policy. 'full' saves nothing; 'dots' saves the
    projection matmuls (no batch dims) and recomputes the rest, attention scores included."""
    if name == "full":
        return jax.checkpoint_policies.nothing_saveable
    if name == "dots":
        return jax.checkpoint_policies.dots_with_no_batch_dims_saveable
    raise ValueError(f"remat policy '{name}' is unknown; use 'none', 'full' or 'dots'")


class DecoderLayer(nn.Module):
    """(x [B, L, C], ...) -> (x [B, L, C], kv or None); see ``SelfAttention`` for the kv per mode.

    Arguments after x: sin, cos [B, L, D/2]; key_mask [B, L] (train/prefill) or [B, T] (decode);
    lowrank_ab {target: (a [N, d_in, R], b [N, R, d_out])} for this layer; lowrank_coeff {target: coeff};
    cache_kv (k, v) [B, K, T, D] for this layer (decode) or None; cache_index [B] or None; mode.
    """

    config: TextConfig
    runtime: RuntimeConfig

    @nn.compact
    def __call__(
        self, x, sin, cos, key_mask, lowrank_ab, lowrank_coeff, cache_kv, cache_index, mode
    ):
        if mode not in LAYER_MODES:
            raise ValueError(f"layer mode '{mode}' is unknown; use one of {LAYER_MODES}")
        cfg, rt = self.config, self.runtime
        dt, pdt = rt.compute_dtype, rt.param_dtype
        lowrank = join_layer(lowrank_ab, lowrank_coeff)
        h = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dt, pdt, name="input_layernorm")(x)
        attn_out, kv = SelfAttention(cfg, rt, name="self_attn")(
            h, sin, cos, key_mask, lowrank, cache_kv if mode == "decode" else None, cache_index
        )
        x = x + attn_out
        h = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dt, pdt, name="post_attention_layernorm")(x)
        x = x + GatedMLP(cfg, rt, name="mlp")(h, lowrank)
        x = nn.with_logical_constraint(x, ("batch", "length", None))
        return x, (None if mode == "train" else kv)
