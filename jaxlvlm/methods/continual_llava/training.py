"""Continual LLaVA's pieces of a task's phase: the pool forward, key alignment and the pool hooks.

Per task (docs/methods.md section 2): stage 1 aligns the keys the task selects (eq. 11,
``align_keys``, Adam on the keys only); stage 2 trains the pool factors and contextual weights through the frozen
LVLM (eq. 12, ``pool_hooks`` in a phase); the end-of-task snapshot freezes the task's contextual
increment. Entries are selected by the instruction embedding: the frozen MiniLM encoder's, added
to the batch by an iterator wrapper, or the frozen LLM's mean input embedding of the prompt tokens.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlvlm.data import batch as B
from jaxlvlm.methods import prompt_pool as pp
from jaxlvlm.methods.continual_llava.instructions import (
    INSTRUCTION_EMBEDDING,
    EmbeddingIterator,
    embed_global_batch,
    minilm_encoder,
)
from jaxlvlm.methods.continual_llava.settings import ContinualSettings
from jaxlvlm.models.apply import apply_batch
from jaxlvlm.models.config import LVLMConfig
from jaxlvlm.train.phase import MethodHooks

# The frozen LVLM: vision tower, connector and LLM. The pool's keys are trained in stage 1 only.
FROZEN_BASE = ("vision/.*", "connector/.*", "llm/.*")
POOL_FREEZE = (*FROZEN_BASE, "lora/keys")


def pool_config(model_cfg: LVLMConfig, s: ContinualSettings, num_tasks: int) -> pp.PoolConfig:
    """The pool on every layer's o_proj of ``model_cfg``'s decoder."""
    text = model_cfg.text
    return pp.PoolConfig(
        pool_size=s.pool_size,
        top_m=s.top_m,
        rank=s.pool_rank,
        embed_dim=384 if s.embedding == "minilm" else text.hidden_size,
        num_layers=text.num_layers,
        d_in=text.num_heads * text.resolved_head_dim,
        d_out=text.hidden_size,
        max_tasks=num_tasks,
        snapshot_entries=s.snapshot_entries,
        include_current=bool(s.include_current),
    )


def instruction_embedding(params, batch: dict, image_token_id: int) -> jax.Array:
    """[B, d_s]: the batch's MiniLM embeddings when present, else the mean of the frozen LLM's
    input embeddings over the prompt's text tokens."""
    if INSTRUCTION_EMBEDDING in batch:
        return jnp.asarray(batch[INSTRUCTION_EMBEDDING], jnp.float32)
    table = jax.lax.stop_gradient(params["llm"]["embed_tokens"]["embedding"])
    mask = pp.instruction_token_mask(batch, image_token_id)
    return pp.mean_token_embedding(table, batch[B.INPUT_IDS], mask)


def pool_selection(params, pool, batch, pcfg: pp.PoolConfig, image_token_id: int):
    """(idx [B, M], weights [B, M]): each row's top-M pool entries (keys are constants here)."""
    e = instruction_embedding(params, batch, image_token_id)
    idx, w, _ = pp.select_pool_entries(e, jax.lax.stop_gradient(pool["keys"]), pcfg.top_m)
    return idx, w


def make_pool_forward(model, pcfg: pp.PoolConfig, image_token_id: int, num_active: int):
    """forward_fn(params, lora=pool, batch, method_state=memory, rng) -> logits, with the pool on
    o_proj and the snapshots of the ``num_active`` finished tasks."""

    def forward(params, pool, batch, memory, rng):
        del rng
        idx, w = pool_selection(params, pool, batch, pcfg, image_token_id)
        lowrank = pp.pool_lowrank(pool, memory, idx, w, pcfg, num_active)
        return apply_batch(model, params, batch, lowrank=lowrank)

    return forward


def align_keys(
    params, pool: dict, batches: Iterator[dict], pcfg: pp.PoolConfig, s: ContinualSettings, tid: int
) -> dict:
    """Stage 1 (eq. 11): s.align_steps batches, Adam on the keys only; returns the pool."""
    tx = optax.adam(s.key_lr)

    @jax.jit
    def step(keys, opt, params, batch):
        e = instruction_embedding(params, batch, tid)
        idx, _, _ = pp.select_pool_entries(e, keys, pcfg.top_m)
        row = (batch[B.LOSS_MASK].sum(axis=1) > 0).astype(jnp.float32)
        loss, g = jax.value_and_grad(lambda k: pp.align_loss(e, k, idx, row))(keys)
        upd, opt = tx.update(g, opt, keys)
        return optax.apply_updates(keys, upd), opt, loss

    keys = pool["keys"]
    opt = tx.init(keys)
    loss = None
    for _ in range(s.align_steps):
        keys, opt, loss = step(keys, opt, params, next(batches))
    if loss is not None:
        logging.info("key alignment: last loss %.4f", float(loss))
    return dict(pool, keys=keys)


def embedding_wrapper(s: ContinualSettings, image_token_id: int):
    """(train iterator, run) -> iterator adding MiniLM embeddings, or None for 'token_mean'."""
    if s.embedding != "minilm":
        return None
    encoder = minilm_encoder()

    def wrap(it, run):
        return EmbeddingIterator(
            it, encoder, run.tokenizer, image_token_id, run.mesh, jax.process_count()
        )

    return wrap


def pool_hooks(
    model,
    tokenizer,
    tid: int,
    pcfg: pp.PoolConfig,
    s: ContinualSettings,
    t: int,
    pool: Any,
    memory: Any,
) -> MethodHooks:
    """The phase hooks of task ``t`` of the stream: the pool (from ``pool``) in the lora slot, the
    task memory as method state, the coefficient accumulation after each step, the end-of-task
    snapshot, and the pool's low-rank hooks for evaluation (tasks 0..t finished). tid: the
    model's image token id."""
    encoder = minilm_encoder() if s.embedding == "minilm" else None

    def after(state, batch, metrics):
        del metrics
        idx, w = pool_selection(state.params, state.lora, batch, pcfg, tid)
        coeff = pp.selection_coefficients(idx, w, pcfg.pool_size)
        row = (batch[B.LOSS_MASK].sum(axis=1) > 0).astype(jnp.float32)
        return pp.accumulate_coefficients(state.method_state, coeff, row)

    snapshot = jax.jit(functools.partial(pp.end_of_task_snapshot, cfg=pcfg))

    def finalize(state):
        return state.replace(method_state=snapshot(state.lora, state.method_state))

    def lowrank_fn(state, batch):
        if encoder is not None:
            e = embed_global_batch(batch, encoder, tokenizer, tid)
            batch = dict(batch, **{INSTRUCTION_EMBEDDING: jnp.asarray(e)})
        idx, w = pool_selection(state.params, state.lora, batch, pcfg, tid)
        return pp.pool_lowrank(state.lora, state.method_state, idx, w, pcfg, t + 1)

    pool_now = jax.device_get(pool)
    return MethodHooks(
        method_state=jax.device_get(memory),
        lora_init=lambda r: jax.tree_util.tree_map(jnp.asarray, pool_now),
        forward_fn=make_pool_forward(model, pcfg, tid, t),
        after_step=after,
        lowrank_fn=lowrank_fn,
        finalize=finalize,
        wrap_iterator=embedding_wrapper(s, tid),
    )


def selection_record(memory: dict, tasks: list[str], top_m: int) -> dict:
    """Which pool entries each finished task selected, from the method's own end-of-task snapshots.

    While task t trains, every training instance's selection coefficients (its top-M entries'
    similarity weights, zero elsewhere) are summed into the memory; the end-of-task snapshot keeps
    their mean over the task's instances for its K kept entries (snap_alpha [T_max, K] at the
    entries snap_index [T_max, K]). Nothing is recomputed here.

    Args:
      memory: the pool memory after the stream (jaxlvlm.methods.prompt_pool.init_memory's keys).
      tasks: the finished tasks' names in stream order (slot t of the memory is tasks[t]).
      top_m: M, the entries each instance selects.
    Returns:
      {'pool_size': N, 'top_m': M, 'kept_entries': K,
       'mean_coefficient': [T][N] each task's mean coefficient per entry (0 for an entry outside
         its K kept ones; each row sums to 1 when K = N),
       'top_entries': [T][M] the M entries with the largest mean coefficient, largest first}.
    """
    mem = jax.device_get(memory)
    done = int(mem["num_done"])
    if done < len(tasks):
        raise ValueError(f"the pool memory holds {done} finished tasks, expected {len(tasks)}")
    alpha = np.asarray(mem["snap_alpha"], np.float64)
    index = np.asarray(mem["snap_index"])
    pool_size = int(np.asarray(mem["coeff_sum"]).shape[0])
    dense = np.zeros((len(tasks), pool_size))
    for t in range(len(tasks)):
        dense[t, index[t]] = alpha[t]
    # A stable sort on the negated coefficients: ties keep the lower entry id first.
    top = np.argsort(-dense, axis=1, kind="stable")[:, :top_m]
    return {
        "pool_size": pool_size,
        "top_m": int(top_m),
        "kept_entries": int(alpha.shape[1]),
        "mean_coefficient": dense.tolist(),
        "top_entries": top.tolist(),
    }
