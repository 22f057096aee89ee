"""Low-rank hooks: per-example mixtures of low-rank deltas added to the decoder's projections.

Methods (LoRA, the prompt pool's o_proj increments, ...) pass ``lowrank = {target: LowRankFactors}`` to
the model; the projection named ``target`` in every decoder layer l then computes

    y[b, s] = W x[b, s] (+ bias) + sum_n coeff[b, n] * (x[b, s] @ a[l, n]) @ b[l, n]

without ever forming a d_in x d_out matrix. The factors are call inputs, not module parameters, so
gradients flow to a, b and coeff and the base weights stay untouched (frozen or not, as the caller wants).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import struct

from jaxlvlm.models.config import TextConfig

LOWRANK_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@struct.dataclass
class LowRankFactors:
    """Low-rank factors for one projection type in all layers.

    a:     [num_layers, N, d_in, R]
    b:     [num_layers, N, R, d_out]
    coeff: [B, N] per-example mixing weights, or [N] shared by the batch (LoRA's alpha / R folded in).
    Inside a layer the same class holds one layer's slice: a [N, d_in, R], b [N, R, d_out].
    """

    a: jax.Array
    b: jax.Array
    coeff: jax.Array


def lowrank_dims(cfg: TextConfig) -> dict[str, tuple[int, int]]:
    """(d_in, d_out) of every hookable decoder projection, with heads flattened (H * head_dim)."""
    hd = cfg.resolved_head_dim
    c, ff = cfg.hidden_size, cfg.intermediate_size
    return {
        "q_proj": (c, cfg.num_heads * hd),
        "k_proj": (c, cfg.num_kv_heads * hd),
        "v_proj": (c, cfg.num_kv_heads * hd),
        "o_proj": (cfg.num_heads * hd, c),
        "gate_proj": (c, ff),
        "up_proj": (c, ff),
        "down_proj": (ff, c),
    }


def validate_lowrank(
    cfg: TextConfig, lowrank: Mapping[str, LowRankFactors] | None, batch_size: int
) -> None:
    """Raises ValueError naming the target and the expected shapes if ``lowrank`` does not fit ``cfg``."""
    if not lowrank:
        return
    dims = lowrank_dims(cfg)
    for target, f in lowrank.items():
        if target not in dims:
            raise ValueError(
                f"lowrank target '{target}' is unknown; choose from {list(LOWRANK_TARGETS)}"
            )
        d_in, d_out = dims[target]
        if f.a.ndim != 4 or f.b.ndim != 4:
            raise ValueError(
                f"lowrank['{target}']: a and b must be [num_layers, N, d_in, R] and "
                f"[num_layers, N, R, d_out]; got a {f.a.shape}, b {f.b.shape}"
            )
        n, rank = f.a.shape[1], f.a.shape[3]
        want_a = (cfg.num_layers, n, d_in, rank)
        want_b = (cfg.num_layers, n, rank, d_out)
        if tuple(f.a.shape) != want_a or tuple(f.b.shape) != want_b:
            raise ValueError(
                f"lowrank['{target}']: a {tuple(f.a.shape)} / b {tuple(f.b.shape)} do not fit this "
                f"decoder; expected a {want_a} and b {want_b}"
            )
        if tuple(f.coeff.shape) not in ((n,), (batch_size, n)):
            raise ValueError(
                f"lowrank['{target}']: coeff has shape {tuple(f.coeff.shape)}, expected ({n},) or "
                f"({batch_size}, {n})"
            )


def split_layers(
    lowrank: Mapping[str, LowRankFactors] | None,
) -> tuple[dict[str, tuple[jax.Array, jax.Array]] | None, dict[str, jax.Array] | None]:
    """Splits the hooks into the per-layer part {target: (a, b)} (leading layer axis, scanned over)
    and the per-call part {target: coeff} (the same for every layer)."""
    if not lowrank:
        return None, None
    per_layer = {t: (f.a, f.b) for t, f in lowrank.items()}
    coeffs = {t: f.coeff for t, f in lowrank.items()}
    return per_layer, coeffs


def join_layer(
    per_layer: Mapping[str, tuple[jax.Array, jax.Array]] | None,
    coeffs: Mapping[str, jax.Array] | None,
) -> dict[str, LowRankFactors]:
    """One layer's hooks {target: LowRankFactors(a [N, d_in, R], b [N, R, d_out], coeff)}."""
    if not per_layer:
        return {}
    return {t: LowRankFactors(a=a, b=b, coeff=coeffs[t]) for t, (a, b) in per_layer.items()}


def lowrank_delta(x: jax.Array, f: LowRankFactors) -> jax.Array:
    """delta [B, S, d_out] = sum_n coeff[b, n] * (x[b, s] @ a[n]) @ b[n] for one layer's factors.

    x: [B, S, d_in]; f.a [N, d_in, R]; f.b [N, R, d_out]; f.coeff [B, N] or [N].
    Computed in x's dtype with the rank-R intermediate only (never d_in x d_out).
    """
    dtype = x.dtype
    u = jnp.einsum("bsi,nir->bsnr", x, f.a.astype(dtype))
    coeff = f.coeff.astype(dtype)
    coeff = coeff[:, None, :, None] if coeff.ndim == 2 else coeff[None, None, :, None]
    return jnp.einsum("bsnr,nro->bso", u * coeff, f.b.astype(dtype))
