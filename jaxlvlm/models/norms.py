"""RMSNorm of the Llama family (computed in float32, scaled by a learned per-channel weight)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * scale over the last axis; x [..., C] -> [..., C] in ``dtype``.

    The statistics are taken in float32 whatever the compute dtype (as the reference does), and the
    normalised value is cast to ``dtype`` before the scale multiplies it.
    """

    dim: int
    eps: float = 1e-6
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param(
            "scale",
            nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
            (self.dim,),
            self.param_dtype,
        )
        xf = x.astype(jnp.float32)
        var = jnp.mean(jnp.square(xf), axis=-1, keepdims=True)
        normed = (xf * jax.lax.rsqrt(var + self.eps)).astype(self.dtype)
        return normed * scale.astype(self.dtype)
