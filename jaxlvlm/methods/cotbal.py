"""CoTBal / VisATB task balancing as pure functions (docs/methods.md section 1).

From probe-model validation scores to static per-task weights:

  V [T, T]   V[i, j] = score on task j of the probe trained on task i (+ mini subsets of the others)
  v0 [T]     v0[j]   = score on task j of the mini model
  C  = contribution(V, v0)                       eq. (1); NaN columns where undefined
  c_out, c_in = out_in_contributions(C)          eq. (2), with the fallback below
  D  = difficulty(V, v0)                         eq. (3)
  lam = cotbal_weights(c_out, c_in, D, tau, alphas)   eqs. (4)-(5)

Tasks with a fixed weight of 1 (text-only data such as ShareGPT) take no part at all: the authors'
``weighting_visatb.py`` weights the 7 balanced Academic tasks from 7-entry c_out / c_in / r
vectors, so the fixed task has no probe and no row or column in C. ``weights_from_scores`` drops
them from V, v0 before (1)-(5) and gives them exactly 1.

A probe that does not improve its own task (V[j, j] - v0[j] <= max(1e-3 |v0[j]|, 1e-8)) leaves
column j of C undefined (eq. 1 divides by that gain). Such a column is NaN, not a clipped number;
the fallback ([O]): c_out averages only the defined columns, and the task's c_in, which would come
from its column alone, is set to the mean c_in of the tasks whose column is defined, so its inward
weight is the typical one (no up- or down-weighting from a non-measurement). ``weights_from_scores``
returns which tasks fell back ('undefined') with their V[j, j] and v0[j]; ``fallback_lines`` words
it for the log and the report.

and the token-level weighted LM loss that uses them (eq. 6, "VITW"): ``vitw_loss``.
All functions take and return jax arrays and are jit/vmap friendly; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlvlm.methods.cotbal_mix import mixed_weights
from jaxlvlm.methods.cotbal_mix import tempered_weights as tempered_weights  # public here too
from jaxlvlm.methods.cotbal_tau import resolve_temperature as resolve_temperature  # public here

# 1(g): a task whose own-data gain is not above this floor has an undefined column in C.
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


def undefined_columns(V: jax.Array, v0: jax.Array) -> jax.Array:
    """[T] bool: tasks whose probe does not improve them, V[j, j] - v0[j] <= max(1e-3 |v0[j]|, 1e-8).

    Their column of C (eq. 1) is undefined. V: [T, T]; v0: [T] (higher is better).
    """
    V = jnp.asarray(V, jnp.float32)
    v0 = jnp.asarray(v0, jnp.float32)
    _check_square(V, v0)
    floor = jnp.maximum(DENOM_REL_FLOOR * jnp.abs(v0), DENOM_ABS_FLOOR)
    return jnp.diagonal(V) - v0 <= floor


def contribution(V: jax.Array, v0: jax.Array) -> jax.Array:
    """Inter-task contribution matrix, eq. (1): C[i, j] = (V[i, j] - v0[j]) / (V[j, j] - v0[j]).

    Columns of ``undefined_columns`` are NaN; defined entries are clipped to [-1, 2] ([O], a tiny
    positive gain must not dominate). The diagonal is 1 where defined; it is never used downstream.

    Args:
      V: [T, T] probe scores (row = probe model i, column = evaluated task j), higher is better.
      v0: [T] mini-model scores.
    Returns:
      C: [T, T] float32.
    """
    V = jnp.asarray(V, jnp.float32)
    v0 = jnp.asarray(v0, jnp.float32)
    undefined = undefined_columns(V, v0)
    denom = jnp.where(undefined, 1.0, jnp.diagonal(V) - v0)
    C = jnp.clip((V - v0[None, :]) / denom[None, :], *CONTRIBUTION_CLIP)
    return jnp.where(undefined[None, :], jnp.nan, C)


def _nanmean_or(x: jax.Array, fallback: jax.Array) -> jax.Array:
    ok = ~jnp.isnan(x)
    count = ok.sum()
    return jnp.where(count > 0, jnp.where(ok, x, 0.0).sum() / jnp.maximum(count, 1), fallback)


def out_in_contributions(C: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Outward and inward contributions, eq. (2), excluding the diagonal and undefined (NaN) columns.

    c_out[i] = mean over defined j != i of C[i, j] (how much task i helps the others);
    c_in[i]  = mean_{j != i} C[j, i] (how much task i is helped by the others).
    Fallbacks (module docstring): a task with an undefined column gets the mean c_in of the
    defined tasks; a c_out with no defined column to average gets the mean of the other c_out;
    with nothing defined at all, both are 0 (uniform weights).

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
    off = jnp.where(jnp.eye(T, dtype=bool), jnp.nan, C)
    c_out = jax.vmap(lambda row: _nanmean_or(row, jnp.nan))(off)
    c_in = jax.vmap(lambda col: _nanmean_or(col, jnp.nan))(off.T)
    c_out = jnp.where(jnp.isnan(c_out), _nanmean_or(c_out, 0.0), c_out)
    c_in = jnp.where(jnp.isnan(c_in), _nanmean_or(c_in, 0.0), c_in)
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
    return mixed_weights(c_out, c_in, D, tau, (a_out, a_in, a_d), balanced)


def weights_from_scores(
    V: jax.Array,
    v0: jax.Array,
    tau: float | str = 0.5,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    higher_better: jax.Array | None = None,
    balanced: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """The whole chain (1)-(5) from raw probe scores, fixed-weight tasks left out.

    Args:
      V: [T, T] over the full task list (rows / columns of fixed tasks are ignored, may be NaN);
      v0: [T]; higher_better: optional [T] bool (lower-better columns are negated);
      balanced: optional [T] bool, False = fixed weight 1 (no probe, no part in C, c_out, c_in, D);
      tau: a temperature, or 'auto' (cotbal_tau.auto_temperature: the lowest tau that keeps every
        weight in [0.5, 2.0]).
    Returns:
      dict over the full task list: C [T, T], c_out, c_in, D, lam [T] (NaN where a task is fixed,
      lam = 1 there), tau (scalar used), undefined [T] bool (columns that fell back), own_gain [T]
      = V[j, j] - v0[j] (oriented), own_score [T] = V[j, j], mini_score [T] = v0[j] (oriented).
    """
    V = orient_scores(jnp.asarray(V, jnp.float32), higher_better)
    v0 = orient_scores(jnp.asarray(v0, jnp.float32), higher_better)
    _check_square(V, v0)
    T = V.shape[0]
    keep = np.ones(T, bool) if balanced is None else np.asarray(balanced, bool)
    idx = np.flatnonzero(keep)
    if len(idx) < 2:
        raise ValueError(f"CoTBal needs at least 2 balanced tasks, got {len(idx)} of {T}")
    Vb, v0b = V[np.ix_(idx, idx)], v0[idx]
    C = contribution(Vb, v0b)
    c_out, c_in = out_in_contributions(C)
    D = difficulty(Vb, v0b)
    tau = resolve_temperature(tau, c_out, c_in, D, alphas)
    lam = cotbal_weights(c_out, c_in, D, tau, alphas)

    def full(x, fill):
        return jnp.full((T,), fill, jnp.float32).at[idx].set(x)

    return {
        "C": jnp.full((T, T), jnp.nan, jnp.float32).at[np.ix_(idx, idx)].set(C),
        "c_out": full(c_out, jnp.nan),
        "c_in": full(c_in, jnp.nan),
        "D": full(D, jnp.nan),
        "lam": full(lam, 1.0),
        "tau": jnp.asarray(tau, jnp.float32),
        "undefined": jnp.zeros((T,), bool).at[idx].set(undefined_columns(Vb, v0b)),
        "own_gain": full(jnp.diagonal(Vb) - v0b, jnp.nan),
        "own_score": full(jnp.diagonal(Vb), jnp.nan),
        "mini_score": full(v0b, jnp.nan),
    }


def fallback_lines(result: dict, task_names: Sequence[str]) -> list[str]:
    """One log / report line per task whose column of C was undefined (weights_from_scores)."""
    lines = []
    for i in np.flatnonzero(np.asarray(result["undefined"])):
        own, mini = float(result["own_score"][i]), float(result["mini_score"][i])
        lines.append(
            f"CoTBal: the probe of task {task_names[i]!r} does not improve it (V[i, i] = {own:.4g} "
            f"<= v0[i] = {mini:.4g}, oriented higher-is-better), so its column of C is undefined: "
            "it is left out of every c_out and its c_in is the mean c_in of the other tasks"
        )
    return lines


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
