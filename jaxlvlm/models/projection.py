"""A linear projection with logical axis names on its kernel and the low-rank hook built in."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxlvlm.models.lowrank import LowRankHook, fold_into_kernel, lowrank_delta


class Projection(nn.Module):
    """y = x . kernel (+ bias) (+ low-rank delta), contracting x's trailing ``in_shape`` dims.

    kernel: in_shape + out_shape (e.g. [C, heads, head_dim] for q_proj, [heads, head_dim, C] for
    o_proj), logical names in_names + out_names; bias: out_shape.
    x [B, S, *in_shape] -> y [B, S, *out_shape] in ``dtype`` (float32 with ``float32_output``).
    kernel_init: ``(rng, shape, dtype) -> array`` for the full kernel shape (default: fan-in
    truncated normal over the in_shape dims); the names are attached here.
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_names: tuple[str, ...]
    out_names: tuple[str, ...]
    use_bias: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    float32_output: bool = False  # the LM head: logits accumulated and returned in float32
    kernel_init: Callable[..., jax.Array] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, lowrank: LowRankHook | None = None) -> jax.Array:
        n_in = len(self.in_shape)
        n_out = len(self.out_shape)
        init = self.kernel_init or nn.initializers.variance_scaling(
            1.0,
            "fan_in",
            "truncated_normal",
            in_axis=tuple(range(n_in)),
            out_axis=tuple(range(n_in, n_in + n_out)),
        )
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(init, self.in_names + self.out_names),
            self.in_shape + self.out_shape,
            self.param_dtype,
        )
        if tuple(x.shape[-n_in:]) != tuple(self.in_shape):
            raise ValueError(f"{self.name}: input {x.shape} does not end in {self.in_shape}")
        x = x.astype(self.dtype)
        batch_nd = x.ndim - n_in
        lead = x.shape[:batch_nd]
        kernel = kernel.astype(self.dtype)
        if lowrank is not None:
            # Batch-shared high-rank hook parts cost less added to the weight than applied per token.
            kernel, lowrank = fold_into_kernel(kernel, lowrank, math.prod(lead))
        # One [tokens, d_in] x [d_in, d_out] matmul: with the batch dims kept ([B, L, C] x [C, F]),
        # XLA's CPU backend lowers the weight gradient (a contraction over B and L) through
        # transposing copies, and the step's MLP ran 1.45x slower (tools/bench: mlp_layout).
        d_in, d_out = math.prod(self.in_shape), math.prod(self.out_shape)
        y = jax.lax.dot_general(
            x.reshape(-1, d_in),
            kernel.reshape(d_in, d_out),
            (((1,), (0,)), ((), ())),
            preferred_element_type=jnp.float32 if self.float32_output else None,
        ).reshape(lead + self.out_shape)
        if self.use_bias:
            bias = self.param(
                "bias",
                nn.with_logical_partitioning(nn.initializers.zeros, self.out_names),
                self.out_shape,
                self.param_dtype,
            )
            y = y + bias.astype(y.dtype)
        if lowrank is not None:
            flat = x.reshape(lead[0], -1, d_in)
            delta = lowrank_delta(flat, lowrank).reshape(y.shape)
            y = y + delta.astype(y.dtype)
        return y
