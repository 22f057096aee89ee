"""CoTBal / VisATB task balancing as pure functions (METHODS.md section 1).

From probe-model validation scores to static per-task weights:

  V [T, T]   V[i, j] = score on task j of the probe trained on task i (+ mini subsets of the others)
  v0 [T]     v0[j]   = score on task j of the mini model
  C  = contribution(V, v0)                       eq. (1), with the guards of 1(g)
  c_out, c_in = out_in_contributions(C)          eq. (2)
  D  = difficulty(V, v0)                         eq. (3)
  lam = cotbal_weights(c_out, c_in, D, tau, alphas)   eqs. (4)-(5)

and the token-level weighted LM loss that uses them (eq. 6, "VITW"): ``vitw_loss``.
All functions take and return jax arrays and are jit/vmap friendly; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

# 1(g): a task that does not improve with its own data has a denominator near zero or negative;
# floor it relative to the mini-model score so C stays finite, then clip C to a sane range.
DENOM_REL_FLOOR = 1e-3
# Absolute floor on top of the relative one, for the degenerate case v0[j] == 0.
DENOM_ABS_FLOOR = 1e-8
CONTRIBUTION_CLIP = (-1.0, 2.0)
DEFAULT_ALPHAS = (0.25, 0.25, 0.5)


def orient_scores(scores: jax.Array, higher_better: jax.Array | None) -> jax.Array:
    """Negates the columns of lower-is-better metrics (1(g)) so every score is higher-is-better.

    scores: [..., T] (task on the last axis); higher_better: [T] bool, or None (all higher-better).
    """
    if higher_better is None:
        return scores
    sign = jnp.where(jnp.asarray(higher_better, bool), 1.0, -1.0)
    return scores * sign


def contribution(V: jax.Array, v0: jax.Array) -> jax.Array:
    """Inter-task contribution matrix, eq. (1): C[i, j] = (V[i, j] - v0[j]) / (V[j, j] - v0[j]).

    The denominator is floored at max(1e-3 * |v0[j]|, 1e-8) and C is clipped to [-1, 2] (1(g)).
    The diagonal is 1 whenever the task improves with its own data; it is never used downstream.

    Args:
      V: [T, T] probe scores (row = probe model i, column = evaluated task j), higher is better.
      v0: [T] mini-model scores.
    Returns:
      C: [T, T] float32.
    """
    V = jnp.asarray(V, jnp.float32)
    v0 = jnp.asarray(v0, jnp.float32)
    _check_square(V, v0)
    floor = jnp.maximum(DENOM_REL_FLOOR * jnp.abs(v0), DENOM_ABS_FLOOR)
    denom = jnp.maximum(jnp.diagonal(V) - v0, floor)
    C = (V - v0[None, :]) / denom[None, :]
    return jnp.clip(C, *CONTRIBUTION_CLIP)


def out_in_contributions(C: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Outward and inward contributions, eq. (2), excluding the diagonal.

    c_out[i] = mean_{j != i} C[i, j] (how much task i helps the others);
    c_in[i]  = mean_{j != i} C[j, i] (how much task i is helped by the others).

    Args:
      C: [T, T] with T >= 2.
    Returns:
      (c_out [T], c_in [T]).
    """
    C = jnp.asarray(C, jnp.float32)
    T = C.shape[0]
    if C.ndim != 2 or C.shape[1] != T:
        raise ValueError(f"contribution matrix must be square [T, T], got shape {C.shape}")
    if T < 2:
        raise ValueError("out/in contributions need at least 2 tasks (they average over j != i)")
    off = 1.0 - jnp.eye(T, dtype=C.dtype)
    c_out = (C * off).sum(axis=1) / (T - 1)
    c_in = (C * off).sum(axis=0) / (T - 1)
    return c_out, c_in


def difficulty(V: jax.Array, v0: jax.Array) -> jax.Array:
    """Intra-task difficulty, eq. (3) ("real" variant): D[i] = 1 - v0[i] / V[i, i].

    A zero own-data score would make D undefined; its magnitude is floored at 1e-8 (sign kept).

    Args:
      V: [T, T] probe scores; v0: [T] mini-model scores (higher is better).
    Returns:
      D: [T] float32.
    """
    V = jnp.asarray(V, jnp.float32)
    v0 = jnp.asarray(v0, jnp.float32)
    _check_square(V, v0)
    own = jnp.diagonal(V)
    own = jnp.where(jnp.abs(own) < DENOM_ABS_FLOOR, DENOM_ABS_FLOOR, own)
    return 1.0 - v0 / own


def tempered_weights(scores: jax.Array, tau: float, balanced: jax.Array | None = None) -> jax.Array:
    """T' * softmax(scores / tau) over the balanced tasks (mean 1 over them), 1.0 for the others.

    Args:
      scores: [T] (c_out, -c_in or D).
      tau: temperature > 0.
      balanced: [T] bool; False marks tasks with a fixed weight of 1 (text-only tasks such as
        ShareGPT, METHODS 1(c)); None = all tasks balanced.
    Returns:
      [T] float32 weights.
    """
    scores = jnp.asarray(scores, jnp.float32)
    if balanced is None:
        balanced = jnp.ones(scores.shape, bool)
    balanced = jnp.asarray(balanced, bool)
    logits = jnp.where(balanced, scores / tau, -jnp.inf)
    n_bal = balanced.sum().astype(jnp.float32)
    w = n_bal * jax.nn.softmax(logits)
    return jnp.where(balanced, w, 1.0)


def cotbal_weights(
    c_out: jax.Array,
    c_in: jax.Array,
    D: jax.Array,
    tau: float = 0.5,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    balanced: jax.Array | None = None,
) -> jax.Array:
    """Mixed CoTBal weights, eqs. (4)-(5).

    lam = a_out * T softmax(c_out / tau) + a_in * T softmax(-c_in / tau) + a_D * T softmax(D / tau).

    Args:
      c_out, c_in, D: [T] each.
      tau: temperature (0.5 for Academic/Chat, 1.0 for M3IT).
      alphas: (a_out, a_in, a_D), summing to 1.
      balanced: optional [T] bool; unbalanced tasks get weight exactly 1.
    Returns:
      lam: [T] float32 (mean 1 over the balanced tasks).
    """
    a_out, a_in, a_d = (float(a) for a in alphas)
    if abs(a_out + a_in + a_d - 1.0) > 1e-6:
        raise ValueError(f"CoTBal alphas must sum to 1, got {tuple(alphas)}")
    if tau <= 0:
        raise ValueError(f"CoTBal temperature tau must be > 0, got {tau}")
    lam_out = tempered_weights(c_out, tau, balanced)
    lam_in = tempered_weights(-jnp.asarray(c_in, jnp.float32), tau, balanced)
    lam_d = tempered_weights(D, tau, balanced)
    return a_out * lam_out + a_in * lam_in + a_d * lam_d


def weights_from_scores(
    V: jax.Array,
    v0: jax.Array,
    tau: float = 0.5,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    higher_better: jax.Array | None = None,
    balanced: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """The whole chain (1)-(5) from raw probe scores.

    Args:
      V: [T, T]; v0: [T]; higher_better: optional [T] bool (lower-better columns are negated);
      balanced: optional [T] bool.
    Returns:
      dict with C [T, T], c_out [T], c_in [T], D [T], lam [T].
    """
    V = orient_scores(jnp.asarray(V, jnp.float32), higher_better)
    v0 = orient_scores(jnp.asarray(v0, jnp.float32), higher_better)
    C = contribution(V, v0)
    c_out, c_in = out_in_contributions(C)
    D = difficulty(V, v0)
    lam = cotbal_weights(c_out, c_in, D, tau, alphas, balanced)
    return {"C": C, "c_out": c_out, "c_in": c_in, "D": D, "lam": lam}


def token_weights(mask: jax.Array, task: jax.Array, lam: jax.Array) -> jax.Array:
    """Per-token weights lam[task(b)] * m[b, k].

    Args:
      mask: [B, L] answer-token mask; task: [B] int task ids in [0, T); lam: [T].
    Returns:
      [B, L] float32.
    """
    lam = jnp.asarray(lam, jnp.float32)
    per_row = jnp.take(lam, jnp.asarray(task, jnp.int32), axis=0)
    return per_row[:, None] * jnp.asarray(mask, jnp.float32)


def vitw_loss(nll: jax.Array, mask: jax.Array, task: jax.Array, lam: jax.Array) -> jax.Array:
    """Token-level weighted average NLL, eq. (6).

    L = sum_{b,k} lam[task(b)] m[b,k] nll[b,k] / sum_{b,k} lam[task(b)] m[b,k]; 0 for an empty batch.
    Equal weights give the plain token mean (EW).

    Args:
      nll: [B, L] token NLL; mask: [B, L] answer mask; task: [B] int; lam: [T].
    Returns:
      scalar float32.
    """
    w = token_weights(mask, task, lam)
    num = jnp.sum(w * jnp.asarray(nll, jnp.float32))
    den = jnp.sum(w)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def _check_square(V: jax.Array, v0: jax.Array) -> None:
    if V.ndim != 2 or V.shape[0] != V.shape[1]:
        raise ValueError(f"V must be a square [T, T] score matrix, got shape {V.shape}")
    if v0.shape != (V.shape[0],):
        raise ValueError(f"v0 must have shape [T] = ({V.shape[0]},), got {v0.shape}")
