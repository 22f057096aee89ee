"""Token embedding table with a tied read-out (logits = hidden @ embedding^T)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn


class Embed(nn.Module):
    """Embedding table [vocab, dim] with logical axes ('vocab', 'embed')."""

    vocab_size: int
    dim: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        self.embedding = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(stddev=0.02), ("vocab", "embed")),
            (self.vocab_size, self.dim),
            self.param_dtype,
        )

    def __call__(self, ids: jax.Array) -> jax.Array:
        """ids [B, L] int -> embeddings [B, L, dim] in ``dtype``."""
        return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

    def attend(self, h: jax.Array) -> jax.Array:
        """Tied read-out: h [B, L, dim] -> logits [B, L, vocab] float32 (accumulated in float32)."""
        table = self.embedding.astype(self.dtype)
        return jnp.einsum(
            "bld,vd->blv", h.astype(self.dtype), table, preferred_element_type=jnp.float32
        )
