"""Per-task loss weightings for multi-task instruction tuning, all through the token-level loss (eq. 6).

Every weighting produces a weight vector lam [T] that enters the VITW loss
``sum lam[task] m nll / sum lam[task] m`` (jaxlvlm.methods.cotbal.vitw_loss); they differ only in
where lam comes from (METHODS.md 1(e)-(f)):

  ew      equal token weighting: lam = 1 (the plain LLaVA token mean)
  tla     task-level loss average: lam[t] = (N / T_b) / N_t for the T_b tasks present in the batch
          (N_t = answer tokens of task t, N = all), so (6) equals the mean over tasks of each task's
          token-mean loss
  dwa     dynamic weight average over windows of steps: lam = T softmax(r / temperature) with
          r[t] = L_t(w-1) / L_t(w-2), the token-mean losses of the last two complete windows
          (window 25, temperature 2 in the reference trainer); lam = 1 until two windows exist
  rlw     random loss weighting: lam = T softmax(z), z ~ N(0, I) drawn per step from a key in the
          state folded with the step, so a resumed run draws the same weights
  cotbal  static weights from the probe phase, stored in the state

The running state is a plain dict pytree meant for the train state's ``method_state``; it always holds
'task_weights' (the last weights used, so every checkpoint carries them). Hyper-parameters live in the
hashable ``WeightingConfig`` passed as a static argument.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxlvlm.methods.cotbal import vitw_loss

WEIGHTINGS = ("ew", "tla", "dwa", "rlw", "cotbal")


@dataclasses.dataclass(frozen=True)
class WeightingConfig:
    """Static description of a weighting (hashable, so usable as a jit static argument)."""

    name: str
    num_tasks: int
    dwa_window: int = 25
    dwa_temperature: float = 2.0
    seed: int = 0

    def __post_init__(self):
        if self.name not in WEIGHTINGS:
            raise ValueError(f"unknown task weighting {self.name!r}; choose one of {WEIGHTINGS}")
        if self.num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {self.num_tasks}")
        if self.dwa_window < 1 or self.dwa_temperature <= 0:
            raise ValueError(
                f"DWA needs window >= 1 and temperature > 0, got {self.dwa_window}, {self.dwa_temperature}"
            )


def init_weighting_state(
    cfg: WeightingConfig, static_weights: jax.Array | None = None
) -> dict[str, jax.Array]:
    """The initial method state.

    Args:
      cfg: the weighting.
      static_weights: [T] weights for 'cotbal' (required there, refused elsewhere).
    Returns:
      dict pytree: 'task_weights' [T] always; DWA adds window accumulators, RLW a PRNG key.
    """
    T = cfg.num_tasks
    if cfg.name == "cotbal":
        if static_weights is None:
            raise ValueError(
                "the 'cotbal' weighting needs static_weights (from the probe phase or a file)"
            )
        w = jnp.asarray(static_weights, jnp.float32)
        if w.shape != (T,):
            raise ValueError(f"CoTBal weights have shape {w.shape}, the run has {T} tasks")
    elif static_weights is not None:
        raise ValueError(f"static_weights are only used by 'cotbal', not {cfg.name!r}")
    else:
        w = jnp.ones((T,), jnp.float32)
    state = {"task_weights": w}
    if cfg.name == "dwa":
        state.update(
            win_loss_sum=jnp.zeros((T,), jnp.float32),
            win_tokens=jnp.zeros((T,), jnp.float32),
            win_steps=jnp.zeros((), jnp.int32),
            prev1=jnp.ones((T,), jnp.float32),
            prev2=jnp.ones((T,), jnp.float32),
            prev1_valid=jnp.zeros((T,), bool),
            prev2_valid=jnp.zeros((T,), bool),
        )
    if cfg.name == "rlw":
        state["rng"] = jax.random.key_data(jax.random.PRNGKey(cfg.seed))
    return state


def per_task_sums(
    nll: jax.Array, mask: jax.Array, task: jax.Array, num_tasks: int
) -> tuple[jax.Array, jax.Array]:
    """Sum of masked token NLL and count of answer tokens per task.

    Args:
      nll: [B, L]; mask: [B, L]; task: [B] int in [0, T).
    Returns:
      (loss_sum [T], tokens [T]) float32.
    """
    m = jnp.asarray(mask, jnp.float32)
    row_loss = jnp.sum(m * jnp.asarray(nll, jnp.float32), axis=1)
    row_tok = jnp.sum(m, axis=1)
    task = jnp.asarray(task, jnp.int32)
    loss_sum = jax.ops.segment_sum(row_loss, task, num_segments=num_tasks)
    tokens = jax.ops.segment_sum(row_tok, task, num_segments=num_tasks)
    return loss_sum, tokens


def task_weights(
    cfg: WeightingConfig,
    state: dict[str, jax.Array],
    mask: jax.Array,
    task: jax.Array,
    step: jax.Array,
) -> jax.Array:
    """The weights lam [T] for this batch (before the gradient step).

    Args:
      cfg: the weighting; state: its method state; mask: [B, L] answer mask; task: [B]; step: scalar.
    Returns:
      lam: [T] float32.
    """
    T = cfg.num_tasks
    if cfg.name == "ew":
        return jnp.ones((T,), jnp.float32)
    if cfg.name == "cotbal":
        return state["task_weights"]
    if cfg.name == "tla":
        tokens = per_task_sums(jnp.zeros_like(mask, jnp.float32), mask, task, T)[1]
        present = tokens > 0
        n_present = jnp.maximum(present.sum(), 1).astype(jnp.float32)
        total = tokens.sum()
        w = total / (n_present * jnp.where(present, tokens, 1.0))
        # Absent tasks have no tokens, so their weight never matters; 1 keeps the logged vector readable.
        return jnp.where(present, w, 1.0)
    if cfg.name == "dwa":
        both = state["prev1_valid"] & state["prev2_valid"]
        ratio = jnp.where(both, state["prev1"] / jnp.where(both, state["prev2"], 1.0), 1.0)
        return T * jax.nn.softmax(ratio / cfg.dwa_temperature)
    if cfg.name == "rlw":
        key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), step)
        z = jax.random.normal(key, (T,), jnp.float32)
        return T * jax.nn.softmax(z)
    raise AssertionError(cfg.name)


def update_weighting_state(
    cfg: WeightingConfig,
    state: dict[str, jax.Array],
    loss_sum: jax.Array,
    tokens: jax.Array,
    lam: jax.Array,
) -> dict[str, jax.Array]:
    """The state after a step that used weights ``lam`` on a batch with these per-task sums.

    DWA folds the batch's per-task losses into the current window and, when the window is full,
    shifts the window means (a task without tokens in a window keeps no valid mean for it).

    Args:
      loss_sum: [T] sum of answer-token NLL per task (constant; see per_task_sums, or the train
        step's metrics task_loss * task_tokens); tokens: [T] answer tokens per task; lam: [T].
    Returns:
      the new state dict (same structure).
    """
    state = dict(state)
    state["task_weights"] = jnp.asarray(lam, jnp.float32)
    if cfg.name != "dwa":
        return state
    loss_sum = jax.lax.stop_gradient(jnp.asarray(loss_sum, jnp.float32))
    tokens = jnp.asarray(tokens, jnp.float32)
    win_loss = state["win_loss_sum"] + loss_sum
    win_tok = state["win_tokens"] + tokens
    win_steps = state["win_steps"] + 1
    full = win_steps >= cfg.dwa_window
    seen = win_tok > 0
    mean = win_loss / jnp.where(seen, win_tok, 1.0)
    state["prev2"] = jnp.where(full, state["prev1"], state["prev2"])
    state["prev2_valid"] = jnp.where(full, state["prev1_valid"], state["prev2_valid"])
    state["prev1"] = jnp.where(full, jnp.where(seen, mean, 1.0), state["prev1"])
    state["prev1_valid"] = jnp.where(full, seen, state["prev1_valid"])
    state["win_loss_sum"] = jnp.where(full, 0.0, win_loss)
    state["win_tokens"] = jnp.where(full, 0.0, win_tok)
    state["win_steps"] = jnp.where(full, 0, win_steps).astype(jnp.int32)
    return state


def before_step(
    cfg: WeightingConfig,
    state: dict[str, jax.Array],
    mask: jax.Array,
    task: jax.Array,
    step: jax.Array,
) -> dict[str, jax.Array]:
    """Puts this batch's weights in state['task_weights'], where the train step's token-weighted
    loss (jaxlvlm.train.losses.token_weighted_nll) reads them. mask: [B, L]; task: [B]."""
    state = dict(state)
    state["task_weights"] = task_weights(cfg, state, mask, task, step)
    return state


def after_step(
    cfg: WeightingConfig, state: dict[str, jax.Array], loss_sum: jax.Array, tokens: jax.Array
) -> dict[str, jax.Array]:
    """Folds the step's per-task sums ([T] each) into the running state (DWA windows)."""
    return update_weighting_state(cfg, state, loss_sum, tokens, state["task_weights"])


def weighted_task_loss(
    cfg: WeightingConfig,
    state: dict[str, jax.Array],
    nll: jax.Array,
    mask: jax.Array,
    task: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Loss (6) with this weighting's lam for the batch.

    The weights are constants for the gradient (stop_gradient), as in the reference trainer.

    Args:
      nll: [B, L]; mask: [B, L]; task: [B]; step: scalar int.
    Returns:
      (loss scalar, lam [T]).
    """
    lam = jax.lax.stop_gradient(task_weights(cfg, state, mask, task, step))
    return vitw_loss(nll, mask, task, lam), lam
