"""Low-rank hooks: per-example mixtures of low-rank deltas added to the decoder's projections.

Methods (LoRA, the prompt pool's o_proj increments, ...) pass ``lowrank = {target: hook}`` to the
model; the projection named ``target`` in every decoder layer l then computes ``y = W x (+ bias) +
delta`` without ever forming a per-example d_in x d_out matrix. A hook is one part or a tuple of
parts whose deltas add up:

- ``LowRankFactors`` (entries shared by the batch, mixed per example):
  delta[b, s] = sum_n coeff[b, n] * (x[b, s] @ a[l, n]) @ b[l, n], coeff [B, N] or [N].
- ``GatheredFactors`` (every example has its own M entries, already gathered, e.g. a pool's top-M):
  delta[b, s] = sum_m coeff[b, m] * (x[b, s] @ a[l, b, m]) @ b[l, b, m]: rank M*R per example
  instead of the N*R a dense [B, N] coeff would cost.

A ``LowRankFactors`` part whose coeff is shared ([N]) is the same matrix for every example; when its
total rank N*R is high (a pool's frozen contextual snapshots), adding sum_n coeff[n] a[n] b[n] to the
layer's weight costs less than applying the factors to every token (see ``fold_into_kernel``), and
the result is the same. The factors are call inputs, not module parameters, so gradients flow to
a, b and coeff and the base weights stay untouched (frozen or not, as the caller wants).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Union

import jax
import jax.numpy as jnp
from flax import struct

from jaxlvlm.models.config import TextConfig

LOWRANK_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FOLD_MODES = ("auto", "kernel", "factors")


@struct.dataclass
class LowRankFactors:
    """Low-rank entries for one projection type in all layers, shared by the batch.

    a:     [num_layers, N, d_in, R]
    b:     [num_layers, N, R, d_out]
    coeff: [B, N] per-example mixing weights, or [N] shared by the batch (LoRA's alpha / R folded in).
    fold:  (static) for a shared [N] coeff: 'auto' folds sum_n coeff[n] a[n] b[n] into the layer's
           weight when that is cheaper (``should_fold``), 'kernel' always, 'factors' never.
    Inside a layer the same class holds one layer's slice: a [N, d_in, R], b [N, R, d_out].
    """

    a: jax.Array
    b: jax.Array
    coeff: jax.Array
    fold: str = struct.field(pytree_node=False, default="auto")

    LAYER_FIELDS: ClassVar[tuple[str, ...]] = ("a", "b")


@struct.dataclass
class GatheredFactors:
    """Per-example low-rank entries (already gathered for each example) in all layers.

    a:     [num_layers, B, M, d_in, R]
    b:     [num_layers, B, M, R, d_out]
    coeff: [B, M] mixing weights of each example's own M entries.
    Inside a layer: a [B, M, d_in, R], b [B, M, R, d_out].
    """

    a: jax.Array
    b: jax.Array
    coeff: jax.Array

    LAYER_FIELDS: ClassVar[tuple[str, ...]] = ("a", "b")


HookPart = Union[LowRankFactors, GatheredFactors]  # noqa: UP007 - used at runtime in isinstance
LowRankHook = Union[HookPart, tuple[HookPart, ...]]  # noqa: UP007


def hook_parts(hook: LowRankHook) -> tuple[HookPart, ...]:
    """The parts of a hook as a tuple (a single part becomes a 1-tuple)."""
    return tuple(hook) if isinstance(hook, (tuple, list)) else (hook,)


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


def _validate_shared(name: str, f: LowRankFactors, layers, d_in, d_out, batch_size) -> None:
    if f.fold not in FOLD_MODES:
        raise ValueError(f"{name}: fold '{f.fold}' is unknown; use one of {FOLD_MODES}")
    if f.a.ndim != 4 or f.b.ndim != 4:
        raise ValueError(
            f"{name}: a and b must be [num_layers, N, d_in, R] and "
            f"[num_layers, N, R, d_out]; got a {f.a.shape}, b {f.b.shape}"
        )
    n, rank = f.a.shape[1], f.a.shape[3]
    want_a = (layers, n, d_in, rank)
    want_b = (layers, n, rank, d_out)
    if tuple(f.a.shape) != want_a or tuple(f.b.shape) != want_b:
        raise ValueError(
            f"{name}: a {tuple(f.a.shape)} / b {tuple(f.b.shape)} do not fit this "
            f"decoder; expected a {want_a} and b {want_b}"
        )
    if tuple(f.coeff.shape) not in ((n,), (batch_size, n)):
        raise ValueError(
            f"{name}: coeff has shape {tuple(f.coeff.shape)}, expected ({n},) or ({batch_size}, {n})"
        )


def _validate_gathered(name: str, f: GatheredFactors, layers, d_in, d_out, batch_size) -> None:
    if f.a.ndim != 5 or f.b.ndim != 5:
        raise ValueError(
            f"{name}: gathered a and b must be [num_layers, B, M, d_in, R] and "
            f"[num_layers, B, M, R, d_out]; got a {f.a.shape}, b {f.b.shape}"
        )
    m, rank = f.a.shape[2], f.a.shape[4]
    want_a = (layers, batch_size, m, d_in, rank)
    want_b = (layers, batch_size, m, rank, d_out)
    if tuple(f.a.shape) != want_a or tuple(f.b.shape) != want_b:
        raise ValueError(
            f"{name}: gathered a {tuple(f.a.shape)} / b {tuple(f.b.shape)} do not fit this "
            f"decoder and batch; expected a {want_a} and b {want_b}"
        )
    if tuple(f.coeff.shape) != (batch_size, m):
        raise ValueError(
            f"{name}: gathered coeff has shape {tuple(f.coeff.shape)}, expected ({batch_size}, {m})"
        )


def validate_lowrank(
    cfg: TextConfig, lowrank: Mapping[str, LowRankHook] | None, batch_size: int
) -> None:
    """Raises ValueError naming the target and the expected shapes if ``lowrank`` does not fit ``cfg``."""
    if not lowrank:
        return
    dims = lowrank_dims(cfg)
    for target, hook in lowrank.items():
        if target not in dims:
            raise ValueError(
                f"lowrank target '{target}' is unknown; choose from {list(LOWRANK_TARGETS)}"
            )
        d_in, d_out = dims[target]
        parts = hook_parts(hook)
        for i, f in enumerate(parts):
            name = f"lowrank['{target}']" + (f" part {i}" if len(parts) > 1 else "")
            if isinstance(f, LowRankFactors):
                _validate_shared(name, f, cfg.num_layers, d_in, d_out, batch_size)
            elif isinstance(f, GatheredFactors):
                _validate_gathered(name, f, cfg.num_layers, d_in, d_out, batch_size)
            else:
                raise ValueError(
                    f"{name} is a {type(f).__name__}; expected LowRankFactors, GatheredFactors "
                    "or a tuple of them"
                )


def split_layers(
    lowrank: Mapping[str, LowRankHook] | None,
) -> tuple[dict[str, tuple[HookPart, ...]] | None, dict[str, tuple[HookPart, ...]] | None]:
    """Splits the hooks into the per-layer part (leading layer axis, scanned over) and the per-call
    part (the same for every layer), as {target: tuple of parts} with the other fields set to None.

    Per layer: a, b of every part; per call: coeff. ``join_layer`` puts one layer's slice back."""
    if not lowrank:
        return None, None
    per_layer, per_call = {}, {}
    for t, hook in lowrank.items():
        parts = hook_parts(hook)
        per_layer[t] = tuple(p.replace(coeff=None) for p in parts)
        per_call[t] = tuple(p.replace(**{k: None for k in p.LAYER_FIELDS}) for p in parts)
    return per_layer, per_call


def join_layer(
    per_layer: Mapping[str, tuple[HookPart, ...]] | None,
    per_call: Mapping[str, tuple[HookPart, ...]] | None,
) -> dict[str, tuple[HookPart, ...]]:
    """One layer's hooks {target: tuple of parts}, e.g. LowRankFactors(a [N, d_in, R], b [N, R, d_out],
    coeff) or GatheredFactors(a [B, M, d_in, R], b [B, M, R, d_out], coeff [B, M])."""
    if not per_layer:
        return {}
    return {
        t: tuple(p.replace(coeff=c.coeff) for p, c in zip(per_layer[t], per_call[t], strict=True))
        for t in per_layer
    }


def should_fold(num_tokens: int, rank: int, d_in: int, d_out: int) -> bool:
    """Whether a batch-shared rank-``rank`` delta is cheaper folded into the weight.

    Applied as factors it costs about 3 * tokens * rank * (d_in + d_out) multiply-adds (forward, input
    gradient, factor/coefficient gradients); folded, about 3 * rank * d_in * d_out to build the matrix
    and its gradient plus tokens * d_in * d_out for the weight gradient x^T g that the coefficients
    need. Plain LoRA (rank 8) never folds; a pool's contextual snapshots (rank T*K*R) do in training.
    """
    factors = 3 * num_tokens * rank * (d_in + d_out)
    folded = num_tokens * d_in * d_out + 3 * rank * d_in * d_out
    return factors > folded


def shared_delta_matrix(f: LowRankFactors) -> jax.Array:
    """sum_n coeff[n] a[n] @ b[n] of one layer's shared part: a [N, d_in, R], b [N, R, d_out],
    coeff [N] -> [d_in, d_out] float32."""
    f32 = jnp.float32
    return jnp.einsum("n,nir,nro->io", f.coeff.astype(f32), f.a.astype(f32), f.b.astype(f32))


def fold_into_kernel(
    kernel: jax.Array, hook: LowRankHook, num_tokens: int
) -> tuple[jax.Array, tuple[HookPart, ...] | None]:
    """Adds the batch-shared parts that are cheaper as a weight (``should_fold``) to ``kernel``.

    Args:
      kernel: the projection weight, in_shape + out_shape (its flattened [d_in, d_out] view is the
        hook's orientation); hook: one layer's hook; num_tokens: B * S of the call.
    Returns:
      (kernel + folded deltas in kernel's dtype, the parts still to apply as ``lowrank_delta``, or
      None when every part was folded).
    """
    rest = []
    total = None
    for f in hook_parts(hook):
        if isinstance(f, LowRankFactors) and f.coeff.ndim == 1:
            n, d_in, rank = f.a.shape
            d_out = f.b.shape[-1]
            fold = f.fold == "kernel" or (
                f.fold == "auto" and should_fold(num_tokens, n * rank, d_in, d_out)
            )
            if fold:
                d = shared_delta_matrix(f)
                total = d if total is None else total + d
                continue
        rest.append(f)
    if total is not None:
        kernel = kernel + total.reshape(kernel.shape).astype(kernel.dtype)
    return kernel, (tuple(rest) or None)


def _shared_delta(x: jax.Array, f: LowRankFactors) -> jax.Array:
    dtype = x.dtype
    u = jnp.einsum("bsi,nir->bsnr", x, f.a.astype(dtype))
    coeff = f.coeff.astype(dtype)
    coeff = coeff[:, None, :, None] if coeff.ndim == 2 else coeff[None, None, :, None]
    return jnp.einsum("bsnr,nro->bso", u * coeff, f.b.astype(dtype))


def _gathered_delta(x: jax.Array, f: GatheredFactors) -> jax.Array:
    dtype = x.dtype
    # The coefficient scales b ([B, M, R, d_out]), which is smaller than the [B, S, M, R] activation.
    b = f.b.astype(dtype) * f.coeff.astype(dtype)[:, :, None, None]
    u = jnp.einsum("bsi,bmir->bsmr", x, f.a.astype(dtype))
    return jnp.einsum("bsmr,bmro->bso", u, b)


def lowrank_delta(x: jax.Array, hook: LowRankHook) -> jax.Array:
    """delta [B, S, d_out] of one layer's hook (the sum over its parts).

    x: [B, S, d_in]. LowRankFactors part: a [N, d_in, R], b [N, R, d_out], coeff [B, N] or [N]:
    sum_n coeff[b, n] (x[b, s] @ a[n]) @ b[n]. GatheredFactors part: a [B, M, d_in, R],
    b [B, M, R, d_out], coeff [B, M]: sum_m coeff[b, m] (x[b, s] @ a[b, m]) @ b[b, m].
    Computed in x's dtype with the rank intermediates only (never d_in x d_out).
    """
    total = None
    for f in hook_parts(hook):
        if isinstance(f, GatheredFactors):
            d = _gathered_delta(x, f)
        elif isinstance(f, LowRankFactors):
            d = _shared_delta(x, f)
        else:
            raise TypeError(
                f"a low-rank hook part must be LowRankFactors or GatheredFactors, got {f}"
            )
        total = d if total is None else total + d
    return total
