"""Per-task loss weightings for multi-task instruction tuning, all through the token-level loss (eq. 6).

Every weighting produces a weight vector lam [T] that enters the VITW loss
``sum lam[task] m nll / sum lam[task] m`` (jaxlvlm.methods.cotbal.vitw_loss); they differ only in
where lam comes from (docs/methods.md section 1(e)-(f)):

  ew      equal token weighting: lam = 1 (the plain LLaVA token mean)
  tla     task-level loss average, as the reference trainer (VisATB weight_method.py,
          EqualWeightingTaskBalancing): loss = (1/T) sum_t L_t over ALL T tasks, L_t the token-mean
          loss of task t in the batch (0 for an absent task). As token weights: lam[t] = N / (T N_t)
          (N_t = answer tokens of task t, N = all) with the loss divided by N, the plain token
          count, NOT by sum(lam m) (see tla_loss; a trainer must use that denominator for TLA)
  dwa     dynamic weight average over a ROLLING window, as the reference trainer
          (DynamicWeightAverage): a FIFO of the last 2W steps' per-task mean losses; from step
          k > W on, lam = T softmax(r / temperature), r[t] = mean of the newest W / mean of the
          oldest W (W = 25, temperature 2). The buffer starts at ones. The reference counts a task
          absent from a step as a loss of 0 (get_mean_loss_wo_zero); that biases the window means
          down with small batches, so by default an absent step is left out of the means (the
          meaning of DWA's per-period average loss); dwa_absent_as_zero=True reproduces the
          reference. ``weighted_task_loss`` follows the reference exactly (the step's own losses
          enter the buffer before its weights are computed); the before_step/after_step path,
          whose weights must exist before the forward pass, uses the buffer of the previous step
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
    dwa_absent_as_zero: bool = False
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
            dwa_costs=jnp.ones((2 * cfg.dwa_window, T), jnp.float32),
            dwa_present=jnp.zeros((2 * cfg.dwa_window, T), bool),
            dwa_steps=jnp.zeros((), jnp.int32),
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


def tla_weights(mask: jax.Array, task: jax.Array, num_tasks: int) -> jax.Array:
    """TLA token weights lam[t] = N / (T N_t) for present tasks (1 for absent ones): [T]."""
    tokens = per_task_sums(jnp.zeros_like(mask, jnp.float32), mask, task, num_tasks)[1]
    present = tokens > 0
    w = tokens.sum() / (num_tasks * jnp.where(present, tokens, 1.0))
    return jnp.where(present, w, 1.0)


def tla_loss(nll: jax.Array, mask: jax.Array, task: jax.Array, num_tasks: int) -> jax.Array:
    """(1/T) sum over all T tasks of the task's token-mean loss in the batch (absent tasks: 0).

    = sum(lam[task] m nll) / sum(m) with lam = tla_weights. nll, mask: [B, L]; task: [B].
    """
    m = jnp.asarray(mask, jnp.float32)
    lam = tla_weights(m, task, num_tasks)
    w = jnp.take(lam, jnp.asarray(task, jnp.int32))[:, None] * m
    den = jnp.sum(m)
    return jnp.where(den > 0, jnp.sum(w * nll) / jnp.where(den > 0, den, 1.0), 0.0)


def _dwa_push(state, loss_sum, tokens):
    """The FIFO after one step: its per-task mean loss (0 and not present where absent)."""
    present = tokens > 0
    mean = jnp.where(present, loss_sum / jnp.where(present, tokens, 1.0), 0.0)
    costs = jnp.concatenate([state["dwa_costs"][1:], mean[None]], axis=0)
    flags = jnp.concatenate([state["dwa_present"][1:], present[None]], axis=0)
    return costs, flags


def _dwa_lam(cfg: WeightingConfig, costs, present, step) -> jax.Array:
    """T softmax(r / temperature) from a [2W, T] buffer once step > W, else ones."""
    w = cfg.dwa_window
    if cfg.dwa_absent_as_zero:
        count = jnp.ones_like(costs)
    else:
        count = present.astype(jnp.float32)
    newer = (costs * count)[w:].sum(0), count[w:].sum(0)
    older = (costs * count)[:w].sum(0), count[:w].sum(0)
    # A task absent from the whole older half (its mean is 0 under dwa_absent_as_zero) would
    # divide by zero, a NaN weight in the reference; its ratio is 1 instead.
    ok = (newer[1] > 0) & (older[1] > 0) & (older[0] > 0)
    ratio = jnp.where(
        ok,
        (newer[0] / jnp.maximum(newer[1], 1.0))
        / jnp.where(ok, older[0] / jnp.maximum(older[1], 1.0), 1.0),
        1.0,
    )
    lam = cfg.num_tasks * jax.nn.softmax(ratio / cfg.dwa_temperature)
    return jnp.where(step > w, lam, jnp.ones_like(lam))


def task_weights(
    cfg: WeightingConfig,
    state: dict[str, jax.Array],
    mask: jax.Array,
    task: jax.Array,
    step: jax.Array,
) -> jax.Array:
    """The weights lam [T] for this batch, known before the forward pass (the before_step path).

    Args:
      cfg: the weighting; state: its method state; mask: [B, L] answer mask; task: [B]; step: scalar.
    Returns:
      lam: [T] float32. DWA: from the buffer as of the previous step (module docstring).
    """
    T = cfg.num_tasks
    if cfg.name == "ew":
        return jnp.ones((T,), jnp.float32)
    if cfg.name == "cotbal":
        return state["task_weights"]
    if cfg.name == "tla":
        return tla_weights(mask, task, T)
    if cfg.name == "dwa":
        return _dwa_lam(cfg, state["dwa_costs"], state["dwa_present"], state["dwa_steps"])
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

    DWA pushes the step's per-task mean losses into its rolling buffer.

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
    state["dwa_costs"], state["dwa_present"] = _dwa_push(state, loss_sum, jnp.asarray(tokens))
    state["dwa_steps"] = state["dwa_steps"] + 1
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
    """This weighting's loss for the batch, as the reference trainer computes it.

    Loss (6) with lam, except TLA (tla_loss: divided by the token count, i.e. (1/T) sum_t L_t)
    and DWA, whose weights include this step's own losses (the reference pushes them first).
    The weights are constants for the gradient (stop_gradient), as in the reference trainer.

    Args:
      nll: [B, L]; mask: [B, L]; task: [B]; step: scalar int.
    Returns:
      (loss scalar, lam [T]).
    """
    if cfg.name == "tla":
        lam = tla_weights(mask, task, cfg.num_tasks)
        return tla_loss(nll, mask, task, cfg.num_tasks), lam
    if cfg.name == "dwa":
        loss_sum, tokens = per_task_sums(jax.lax.stop_gradient(nll), mask, task, cfg.num_tasks)
        costs, present = _dwa_push(state, loss_sum, tokens)
        lam = jax.lax.stop_gradient(_dwa_lam(cfg, costs, present, state["dwa_steps"]))
    else:
        lam = jax.lax.stop_gradient(task_weights(cfg, state, mask, task, step))
    return vitw_loss(nll, mask, task, lam), lam
