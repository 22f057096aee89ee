"""Continual and multi-task evaluation metrics as pure functions (docs/methods.md section 5).

Accuracy matrix a [T, T]: a[t, i] = score on task i after finishing training on task t (0-based
here; scores higher-is-better, usually in [0, 100]). b [T]: base-model scores.

  ACC = mean_i a[T-1, i]                                       final average accuracy
  MAA = mean_t mean_{i<=t} a[t, i]                             mean average accuracy over time
  F   = mean_{i<T-1} (max_{t in [i, T-2]} a[t, i] - a[T-1, i]) forgetting (Chaudhry), >= 0
  BWT = mean_{i<T-1} (a[T-1, i] - a[i, i])                     backward transfer (GEM)
  FWT = mean_{i>=1} (a[i-1, i] - b[i])                         forward transfer
  PL  = mean_i a[i, i]                                         plasticity
  RG  = 100 mean_i a_T[i] / a_ref[i]                           relative gain
  delta_I_E: CoTBal's improvement / imbalance vs single-task models

F, BWT and FWT average over T-1 terms and are NaN for a single task (nothing to forget yet).
Metrics of a stream in progress are those of the leading t x t block (``metrics_so_far``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _matrix(a: jax.Array) -> jax.Array:
    a = jnp.asarray(a, jnp.float32)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise ValueError(f"accuracy matrix must be square [T, T] with T >= 1, got shape {a.shape}")
    return a


def final_accuracy(a: jax.Array) -> jax.Array:
    """ACC: mean score over all tasks after the last task. a: [T, T] -> scalar."""
    a = _matrix(a)
    return a[-1].mean()


def mean_average_accuracy(a: jax.Array) -> jax.Array:
    """MAA: mean over t of the mean score on the tasks seen so far. a: [T, T] -> scalar."""
    a = _matrix(a)
    T = a.shape[0]
    seen = jnp.tril(jnp.ones((T, T), jnp.float32))
    per_t = (a * seen).sum(axis=1) / jnp.arange(1, T + 1, dtype=jnp.float32)
    return per_t.mean()


def forgetting(a: jax.Array) -> jax.Array:
    """F (Chaudhry): mean over i < T-1 of best earlier score on i minus the final one. -> scalar."""
    a = _matrix(a)
    T = a.shape[0]
    if T < 2:
        return jnp.asarray(jnp.nan, jnp.float32)
    t_idx = jnp.arange(T)[:, None]
    i_idx = jnp.arange(T)[None, :]
    # Rows t in [i, T-2] count for column i; everything else is masked out of the max.
    valid = (t_idx >= i_idx) & (t_idx <= T - 2)
    best = jnp.max(jnp.where(valid, a, -jnp.inf), axis=0)[: T - 1]
    return (best - a[-1, : T - 1]).mean()


def backward_transfer(a: jax.Array) -> jax.Array:
    """BWT (GEM): mean over i < T-1 of a[T-1, i] - a[i, i]; negative means forgetting. -> scalar."""
    a = _matrix(a)
    T = a.shape[0]
    if T < 2:
        return jnp.asarray(jnp.nan, jnp.float32)
    return (a[-1, : T - 1] - jnp.diagonal(a)[: T - 1]).mean()


def forward_transfer(a: jax.Array, b: jax.Array) -> jax.Array:
    """FWT: mean over i >= 1 of a[i-1, i] - b[i] (zero-shot gain before training on i). -> scalar.

    Args:
      a: [T, T]; b: [T] base-model scores.
    """
    a = _matrix(a)
    T = a.shape[0]
    b = jnp.asarray(b, jnp.float32)
    if b.shape != (T,):
        raise ValueError(f"base scores must have shape ({T},), got {b.shape}")
    if T < 2:
        return jnp.asarray(jnp.nan, jnp.float32)
    before = jnp.diagonal(a, offset=1)  # a[i-1, i] for i = 1..T-1
    return (before - b[1:]).mean()


def plasticity(a: jax.Array) -> jax.Array:
    """PL: mean of a[i, i], how well each task is learned while current. a: [T, T] -> scalar."""
    return jnp.diagonal(_matrix(a)).mean()


def relative_gain(a_final: jax.Array, a_ref: jax.Array) -> jax.Array:
    """RG = 100 mean_i a_final[i] / a_ref[i] (> 100 beats the reference, e.g. joint training).

    Args:
      a_final: [T] scores after the last task; a_ref: [T] reference scores. A zero reference score
        makes its ratio undefined and the result NaN.
    Returns:
      scalar.
    """
    a_final = jnp.asarray(a_final, jnp.float32)
    a_ref = jnp.asarray(a_ref, jnp.float32)
    if a_final.shape != a_ref.shape or a_final.ndim != 1:
        raise ValueError(
            f"relative_gain needs two [T] vectors, got {a_final.shape} and {a_ref.shape}"
        )
    ratio = jnp.where(a_ref != 0, a_final / jnp.where(a_ref != 0, a_ref, 1.0), jnp.nan)
    return 100.0 * ratio.mean()


def delta_I_E(
    a: jax.Array, a_stl: jax.Array, higher_better: jax.Array | None = None
) -> dict[str, jax.Array]:
    """CoTBal's improvement and imbalance relative to single-task models (docs/methods.md
    sections 1(e) and 5.1).

    I_i = s_i (a[i] - a_stl[i]) / |a_stl[i]| * 100 with s_i = +1 (higher better) or -1;
    dI = mean_i I_i (the mean relative change);
    dE = mean_i max(0, -I_i): the mean over ALL tasks of the relative DROP below the single-task
    model, a task at or above its STL score counting 0. It is not the mean absolute relative
    change: gains never enter dE. A zero STL score makes I_i (and the means) NaN.

    Args:
      a: [T] scores of the evaluated model; a_stl: [T] single-task scores; higher_better: [T] bool.
    Returns:
      dict with 'I' [T], 'delta_I' scalar (percent), 'delta_E' scalar (percent).
    """
    a = jnp.asarray(a, jnp.float32)
    a_stl = jnp.asarray(a_stl, jnp.float32)
    if a.shape != a_stl.shape or a.ndim != 1:
        raise ValueError(f"delta_I_E needs two [T] vectors, got {a.shape} and {a_stl.shape}")
    sign = 1.0 if higher_better is None else jnp.where(jnp.asarray(higher_better, bool), 1.0, -1.0)
    nz = a_stl != 0
    rel = jnp.where(nz, (a - a_stl) / jnp.where(nz, jnp.abs(a_stl), 1.0), jnp.nan)
    I = 100.0 * sign * rel  # noqa: E741 - the paper's symbol
    return {"I": I, "delta_I": I.mean(), "delta_E": jnp.maximum(0.0, -I).mean()}


def continual_metrics(a: jax.Array, b: jax.Array | None = None) -> dict[str, jax.Array]:
    """All stream metrics of an accuracy matrix.

    Args:
      a: [T, T] accuracy matrix; b: [T] base scores (FWT is NaN without them).
    Returns:
      dict ACC, MAA, F, BWT, FWT, PL of scalars.
    """
    a = _matrix(a)
    fwt = forward_transfer(a, b) if b is not None else jnp.asarray(jnp.nan, jnp.float32)
    return {
        "ACC": final_accuracy(a),
        "MAA": mean_average_accuracy(a),
        "F": forgetting(a),
        "BWT": backward_transfer(a),
        "FWT": fwt,
        "PL": plasticity(a),
    }


def metrics_so_far(a: jax.Array, num_done: int, b: jax.Array | None = None) -> dict[str, jax.Array]:
    """Metrics of a stream after ``num_done`` tasks: those of the leading block a[:t, :t].

    Args:
      a: [T, T] matrix whose rows >= num_done are not filled yet; num_done: 1..T (static);
      b: [T] base scores or None.
    """
    a = _matrix(a)
    if not 1 <= num_done <= a.shape[0]:
        raise ValueError(f"num_done must be in [1, {a.shape[0]}], got {num_done}")
    sub_b = None if b is None else jnp.asarray(b, jnp.float32)[:num_done]
    return continual_metrics(a[:num_done, :num_done], sub_b)


def final_row_summary(tasks, final, base, wall_s: float, **extra) -> dict:
    """The summary of a one-row run (the joint multi-task upper bound): its final scores [T]
    (0-100), their mean as ACC, the base scores [T] or None, wall seconds, and ``extra``."""
    final = np.asarray(final, np.float64)
    return {
        "approach": "joint",
        "tasks": list(tasks),
        "final": final.tolist(),
        "base": None if base is None else np.asarray(base).tolist(),
        "ACC": float(final.mean()),
        **extra,
        "wall_s": wall_s,
    }
