"""The pure train step: ``train_step(state, batch) -> (state, metrics)``.

Gradient accumulation is a ``lax.scan`` over micro-batches. Losses are (numerator, denominator)
pairs summed over micro-batches and divided once, so an accumulated step equals the full-batch step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxlvlm.data import batch as B
from jaxlvlm.train.chunked_loss import ChunkedHead, chunked_weighted_nll
from jaxlvlm.train.losses import (
    LossFn,
    per_task_token_sums,
    token_loss_weights,
    token_nll,
    token_weighted_nll,
)
from jaxlvlm.train.state import TrainState

# forward_fn(params, lora, batch, method_state, rng) -> logits [B, L, V] (or final hidden states
# [B, L, C] when the step runs a chunked head)
ForwardFn = Callable[[Any, Any, dict, dict, jax.Array], jax.Array]


def split_microbatches(batch: dict, num: int) -> dict:
    """[B, ...] -> [num, B // num, ...] with micro-batch i = rows i, i + num, i + 2 num, ...

    Strided rather than contiguous so each device's rows of a batch-sharded array feed every
    micro-batch evenly (no device idles while another holds a whole micro-batch).
    """

    def split(x):
        if x.shape[0] % num:
            raise ValueError(f"batch size {x.shape[0]} is not divisible by grad_accum={num}")
        x = x.reshape((x.shape[0] // num, num) + x.shape[1:])
        return jnp.swapaxes(x, 0, 1)

    return jax.tree_util.tree_map(split, batch)


def make_train_step(
    forward_fn: ForwardFn,
    tx: optax.GradientTransformation,
    frozen: Any,
    *,
    num_tasks: int,
    grad_accum: int = 1,
    loss_fn: LossFn = token_weighted_nll,
    schedule: optax.Schedule | None = None,
    chunked_head: ChunkedHead | None = None,
    token_weight_fn: Callable[[dict, dict], jax.Array] = token_loss_weights,
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """Returns the un-jitted pure step (the caller jits it with shardings and donation).

    chunked_head: when given, forward_fn returns final hidden states [B, L, C] and the loss is
    sum(w * nll) / sum(w) with w = token_weight_fn(batch, method_state) [B, L], computed by the LM
    head + cross-entropy in chunks (jaxlvlm.train.chunked_loss), never holding the [B, L, V] logits;
    loss_fn is not used then (it must be the loss whose token-weight form token_weight_fn is).

    frozen: bool tree shaped like {'params', 'lora'}; True leaves have their gradients stopped.
    Metrics: loss [], grad_norm [] (before clipping), tokens [] (loss-mask tokens), input_tokens []
    (attention-mask tokens: the throughput count), task_loss [T]
    (unweighted token-mean NLL per task, 0 where a task has no tokens), task_tokens [T], lr [],
    plus any scalar entries a custom loss puts in its aux dict (averaged over micro-batches).
    """

    # A frozen head (e.g. LoRA training) needs no parameter gradient from the chunked loss.
    head_trainable = chunked_head is not None and not all(
        jax.tree_util.tree_leaves(chunked_head.select(frozen["params"]))
    )

    def micro(trainable, mb, method_state, rng):
        trainable = jax.tree_util.tree_map(
            lambda x, f: jax.lax.stop_gradient(x) if f else x, trainable, frozen
        )
        out = forward_fn(trainable["params"], trainable["lora"], mb, method_state, rng)
        if chunked_head is not None:
            w = token_weight_fn(mb, method_state)
            num, nll = chunked_weighted_nll(
                chunked_head, trainable["params"], out, mb[B.TARGETS], w, head_trainable
            )
            den, aux = jnp.sum(w), {"nll": nll}
        else:
            num, den, aux = loss_fn(out, mb, method_state)
        nll = aux["nll"] if "nll" in aux else token_nll(out, mb[B.TARGETS])
        task_sum, task_tok = per_task_token_sums(jax.lax.stop_gradient(nll), mb, num_tasks)
        scalars = {k: v for k, v in aux.items() if k != "nll" and jnp.ndim(v) == 0}
        return num, (den, task_sum, task_tok, scalars)

    grad_fn = jax.value_and_grad(micro, has_aux=True)

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        rng, step_rng = jax.random.split(state.rng)
        trainable = state.trainable
        if grad_accum == 1:
            (num, (den, task_sum, task_tok, scalars)), grads = grad_fn(
                trainable, batch, state.method_state, step_rng
            )
        else:
            mbs = split_microbatches(batch, grad_accum)

            def body(carry, xs):
                i, mb = xs
                (n, (d, ts, tt, sc)), g = grad_fn(
                    trainable, mb, state.method_state, jax.random.fold_in(step_rng, i)
                )
                acc = (n, d, ts, tt, sc, g)
                return jax.tree_util.tree_map(jnp.add, carry, acc), None

            zero_aux = jax.eval_shape(
                lambda: grad_fn(
                    trainable,
                    jax.tree_util.tree_map(lambda x: x[0], mbs),
                    state.method_state,
                    step_rng,
                )
            )
            (_, (_, _, _, sc_shape)), _ = zero_aux
            init = (
                jnp.zeros((), jnp.float32),
                jnp.zeros((), jnp.float32),
                jnp.zeros((num_tasks,), jnp.float32),
                jnp.zeros((num_tasks,), jnp.float32),
                jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), sc_shape),
                jax.tree_util.tree_map(jnp.zeros_like, trainable),
            )
            (num, den, task_sum, task_tok, scalars, grads), _ = jax.lax.scan(
                body, init, (jnp.arange(grad_accum), mbs)
            )
            scalars = jax.tree_util.tree_map(lambda v: v / grad_accum, scalars)
        den = jnp.maximum(den, 1e-8)
        grads = jax.tree_util.tree_map(lambda g: g / den, grads)
        updates, opt_state = tx.update(grads, state.opt_state, trainable)
        new_trainable = optax.apply_updates(trainable, updates)
        metrics = {
            "loss": num / den,
            "grad_norm": optax.global_norm(grads),
            "tokens": jnp.sum(task_tok),
            "input_tokens": jnp.sum(batch[B.ATTENTION_MASK].astype(jnp.float32)),
            "task_loss": task_sum / jnp.maximum(task_tok, 1.0),
            "task_tokens": task_tok,
            **scalars,
        }
        if schedule is not None:
            metrics["lr"] = schedule(state.step)
        new_state = state.replace(
            step=state.step + 1,
            params=new_trainable["params"],
            lora=new_trainable["lora"],
            opt_state=opt_state,
            rng=rng,
        )
        return new_state, metrics

    return train_step
