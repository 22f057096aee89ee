"""Rotary position embeddings (RoPE) of the Llama family: theta, llama3 and linear frequency scaling.

The half-split convention of Hugging Face Llama/Qwen2 is used: a head vector [x1, x2] (two halves of
head_dim / 2) rotates as [x1 cos - x2 sin, x2 cos + x1 sin] with one frequency per pair (i, i + D/2).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


def rope_inv_freq(head_dim: int, theta: float, scaling: dict[str, Any] | None = None) -> np.ndarray:
    """Inverse frequencies [head_dim // 2] (float32), optionally rescaled.

    Computed in float32 numpy the way transformers computes them in float32 torch, so the rotation
    angles (position * inv_freq) agree bit-for-bit up to the pow rounding.
    scaling: None / {'rope_type': 'default'}; {'rope_type': 'linear', 'factor'}; or
    {'rope_type': 'llama3', 'factor', 'low_freq_factor', 'high_freq_factor',
    'original_max_position_embeddings'}.
    """
    exponents = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(head_dim)
    inv_freq = (np.float32(1.0) / (np.float32(theta) ** exponents)).astype(np.float32)
    rope_type = (scaling or {}).get("rope_type", "default")
    if rope_type == "default":
        return inv_freq
    if rope_type == "linear":
        return (inv_freq / np.float32(scaling["factor"])).astype(np.float32)
    if rope_type == "llama3":
        return _llama3_inv_freq(inv_freq, scaling)
    raise ValueError(
        f"rope_type '{rope_type}' is not supported; supported rope types: {list(SUPPORTED_ROPE_TYPES)}"
    )


def _llama3_inv_freq(inv_freq: np.ndarray, scaling: dict[str, Any]) -> np.ndarray:
    # Llama 3.1 scaling: long wavelengths are divided by `factor`, short ones kept, the band in between
    # interpolated smoothly.
    missing = [
        k
        for k in (
            "factor",
            "low_freq_factor",
            "high_freq_factor",
            "original_max_position_embeddings",
        )
        if k not in scaling
    ]
    if missing:
        raise ValueError(f"llama3 rope scaling needs keys {missing} (got {sorted(scaling)})")
    f32 = np.float32
    factor = f32(scaling["factor"])
    low = f32(scaling["low_freq_factor"])
    high = f32(scaling["high_freq_factor"])
    old_len = f32(scaling["original_max_position_embeddings"])
    low_freq_wavelen = old_len / low
    high_freq_wavelen = old_len / high
    wavelen = f32(2 * math.pi) / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq).astype(f32)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (f32(1) - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(is_medium, smoothed, scaled).astype(f32)


def rope_sin_cos(positions: jax.Array, inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """Rotation tables for integer positions [B, L] -> (sin, cos), each [B, L, head_dim // 2] float32."""
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq, jnp.float32)
    return jnp.sin(angles), jnp.cos(angles)


def rope_sin_cos_table(
    positions: jax.Array, inv_freq: np.ndarray, num_positions: int
) -> tuple[jax.Array, jax.Array]:
    """``rope_sin_cos`` for positions known to lie in [0, num_positions): rows of constant tables.

    The tables [num_positions, head_dim // 2] are computed once here in numpy (the float32 angle as
    ``rope_sin_cos`` forms it, its sine and cosine in float64, rounded to float32) and enter the
    program as constants, so each use is an indexed load. Computed in the program, the sines and
    cosines are recomputed inside every fusion that rotates q or k (XLA fuses cheap elementwise
    producers into each consumer), forward and backward: 24 fusions of the small bench step, each
    evaluating sin and cos for every element of q or k. Positions outside the range would be clamped
    by the gather, so callers pass this only a bound they can guarantee (default_positions of an
    [B, L] mask is in [0, L)).
    """
    angles = np.arange(num_positions, dtype=np.float32)[:, None] * inv_freq.astype(np.float32)
    sin = np.sin(angles.astype(np.float64)).astype(np.float32)
    cos = np.cos(angles.astype(np.float64)).astype(np.float32)
    idx = positions.astype(jnp.int32)
    return jnp.asarray(sin)[idx], jnp.asarray(cos)[idx]


def apply_rope(x: jax.Array, sin: jax.Array, cos: jax.Array) -> jax.Array:
    """Rotates x [B, L, heads, head_dim] by the tables [B, L, head_dim // 2]; returns x's dtype.

    The rotation is done in float32 (as the reference does for fp32 models) and cast back, so bf16
    activations are rotated with float32 angles.
    """
    half = x.shape[-1] // 2
    xf = x.astype(jnp.float32)
    x1, x2 = xf[..., :half], xf[..., half:]
    s = sin[:, :, None, :]
    c = cos[:, :, None, :]
    rotated = jnp.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)
    return rotated.astype(x.dtype)
