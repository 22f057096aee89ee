"""SwiGLU feed-forward block of the Llama family: down(silu(gate(x)) * up(x))."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxlvlm.models.config import RuntimeConfig, TextConfig
from jaxlvlm.models.lowrank import LowRankFactors
from jaxlvlm.models.projection import Projection


class GatedMLP(nn.Module):
    """x [B, L, C] -> [B, L, C]; gate/up kernels [C, F] ('embed', 'mlp'), down [F, C] ('mlp', 'embed')."""

    config: TextConfig
    runtime: RuntimeConfig

    @nn.compact
    def __call__(self, x: jax.Array, lowrank: dict[str, LowRankFactors]) -> jax.Array:
        cfg, rt = self.config, self.runtime
        if cfg.hidden_act != "silu":
            raise ValueError(f"decoder hidden_act '{cfg.hidden_act}' is not supported; only 'silu'")
        c, f = cfg.hidden_size, cfg.intermediate_size
        dt, pdt = jnp.dtype(rt.compute_dtype), jnp.dtype(rt.param_dtype)
        up_kw = dict(in_names=("embed",), out_names=("mlp",), use_bias=cfg.mlp_bias, dtype=dt)
        gate = Projection((c,), (f,), param_dtype=pdt, name="gate_proj", **up_kw)(
            x, lowrank.get("gate_proj")
        )
        up = Projection((c,), (f,), param_dtype=pdt, name="up_proj", **up_kw)(
            x, lowrank.get("up_proj")
        )
        hidden = nn.silu(gate) * up
        return Projection(
            (f,),
            (c,),
            ("mlp",),
            ("embed",),
            cfg.mlp_bias,
            dt,
            pdt,
            name="down_proj",
        )(hidden, lowrank.get("down_proj"))
