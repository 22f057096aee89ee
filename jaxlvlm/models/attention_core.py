"""The batched-matmul softmax attention of the 'xla' backend, with a hand-written backward.

Layout (models/attention.py: _xla_attention arranges it): queries qh [B, K, G*Lq, D] (the G query
heads of each of the K kv heads stacked as rows), keys and values kh, vh [B, K, Lk, D]. Scores and
probabilities are float32 [B, K, G*Lq, Lk].

The backward is the one flash attention uses (Dao et al. 2022, eq. in section 3.1 / appendix B.2),
written out instead of left to autodiff of the softmax:

    dV = P^T dO,   dP = dO V^T,   delta_i = sum_d dO_id O_id,   dS = P * (dP - delta),
    dQ = scale * dS K,   dK = scale * dS^T Q.

delta equals autodiff's sum_j P_ij dP_ij (since O = P V), but is a reduction over head_dim instead
of over the keys, and the whole of dS is one elementwise pass over P and dP; autodiff of
``jax.nn.softmax`` reduces the [.., Lq, Lk] product P * dP and makes further passes for the divide
and the exponential. The forward multiplies by the reciprocal of the row sums instead of dividing
every probability (one divide per row, not per score). Same mathematics as the autodiff path
(``custom_vjp=False``), float32 rounding apart; tests/models/test_attention_core.py holds both to a
float64 reference. Not the default: on the small CPU train step it ran level with autodiff (paired
speed-up 0.996x [0.966, 1.027] over 20 rounds, BENCHMARKS.md question 11), so it is kept as an
option (RuntimeConfig.attention_custom_vjp) rather than switched on for no measured gain.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# Large finite negative instead of -inf: a row whose keys are all masked (a padding row) then gets a
# uniform softmax instead of NaNs that would survive a zero loss mask (NaN * 0 = NaN).
MASKED = -1e30
_BATCH = ((0, 1), (0, 1))


def visible(
    key_mask: jax.Array | None, lq: int, lk: int, causal: bool, query_offset: int
) -> jax.Array:
    """bool [B or 1, 1, 1, Lq, Lk]: which key each query may see (key_mask [B, Lk] and, if causal,
    keys j <= i + query_offset). Built from iotas, so XLA folds it into the select that uses it."""
    mask = jnp.ones((1, 1, 1, lq, lk), dtype=bool)
    if key_mask is not None:
        mask = mask & key_mask.astype(bool)[:, None, None, None, :]
    if causal:
        row = jax.lax.broadcasted_iota(jnp.int32, (lq, lk), 0) + query_offset
        col = jax.lax.broadcasted_iota(jnp.int32, (lq, lk), 1)
        mask = mask & (col <= row)[None, None, None]
    return mask


def _scores(qh, kh, mask, groups: int) -> jax.Array:
    """Scaled, masked scores, float32 [B, K, G, Lq, Lk]."""
    b, kv, glq, d = qh.shape
    s = jax.lax.dot_general(qh, kh, (((3,), (3,)), _BATCH), preferred_element_type=jnp.float32)
    s = (s * (d**-0.5)).reshape(b, kv, groups, glq // groups, kh.shape[2])
    return jnp.where(mask, s, MASKED)


def _probs_reciprocal(scores: jax.Array) -> jax.Array:
    """Softmax over the last axis, normalised by multiplying with 1 / row sum."""
    m = jnp.max(scores, axis=-1, keepdims=True)
    e = jnp.exp(scores - jax.lax.stop_gradient(m))
    return e * (1.0 / jnp.sum(e, axis=-1, keepdims=True))


def softmax_attention(
    qh: jax.Array,
    kh: jax.Array,
    vh: jax.Array,
    key_mask: jax.Array | None,
    *,
    groups: int,
    causal: bool,
    query_offset: int = 0,
    custom_vjp: bool = False,
) -> jax.Array:
    """softmax(scale * qh kh^T, masked) vh.

    qh: [B, K, G*Lq, D]; kh, vh: [B, K, Lk, D]; key_mask: [B, Lk] bool (True = visible) or None;
    groups: G, query heads per kv head; causal: query i sees keys j <= i + query_offset.
    Returns [B, K, G*Lq, D] in vh's dtype. custom_vjp=False (the default): the plain formulation
    differentiated by JAX (jax.nn.softmax), the reference the hand-written backward is tested
    against; True: the hand-written backward.
    """
    if not custom_vjp:
        out, _ = _forward(qh, kh, vh, key_mask, groups, causal, query_offset, jax.nn.softmax)
        return out
    return _attention(qh, kh, vh, key_mask, groups, causal, query_offset)


def _forward(qh, kh, vh, key_mask, groups, causal, query_offset, normalise):
    """(out [B, K, G*Lq, D] in vh's dtype, probs [B, K, G*Lq, Lk] float32) with ``normalise``
    turning the masked scores into probabilities along the last axis."""
    lq, lk = qh.shape[2] // groups, kh.shape[2]
    mask = visible(key_mask, lq, lk, causal, query_offset)
    probs = normalise(_scores(qh, kh, mask, groups)).reshape(*qh.shape[:3], lk)
    out = jax.lax.dot_general(probs.astype(vh.dtype), vh, (((3,), (2,)), _BATCH))
    return out, probs


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _attention(qh, kh, vh, key_mask, groups, causal, query_offset):
    out, _ = _attention_fwd(qh, kh, vh, key_mask, groups, causal, query_offset)
    return out


def _attention_fwd(qh, kh, vh, key_mask, groups, causal, query_offset):
    out, probs = _forward(qh, kh, vh, key_mask, groups, causal, query_offset, _probs_reciprocal)
    return out, (qh, kh, vh, key_mask, probs, out)


def _attention_bwd(groups, causal, query_offset, residuals, d_out):
    qh, kh, vh, key_mask, probs, out = residuals
    b, kv, glq, d = qh.shape
    lq, lk = glq // groups, kh.shape[2]
    p = probs.astype(vh.dtype)
    d_v = jax.lax.dot_general(p, d_out, (((2,), (2,)), _BATCH))  # [B, K, Lk, D]
    d_p = jax.lax.dot_general(
        d_out, vh, (((3,), (3,)), _BATCH), preferred_element_type=jnp.float32
    )  # [B, K, G*Lq, Lk]
    delta = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1, keepdims=True)
    d_s = (probs * (d_p - delta)).reshape(b, kv, groups, lq, lk)
    # Masked scores are constants in the forward: no gradient reaches them (this matters only for
    # a row with every key masked, whose probabilities are uniform rather than zero).
    mask = visible(key_mask, lq, lk, causal, query_offset)
    d_s = (jnp.where(mask, d_s, 0.0) * (d**-0.5)).reshape(b, kv, glq, lk).astype(qh.dtype)
    d_q = jax.lax.dot_general(d_s, kh, (((3,), (2,)), _BATCH))  # [B, K, G*Lq, D]
    d_k = jax.lax.dot_general(d_s, qh, (((2,), (2,)), _BATCH))  # [B, K, Lk, D]
    return d_q, d_k, d_v, None


_attention.defvjp(_attention_fwd, _attention_bwd)
