"""Lowering the run's real jitted functions with abstract inputs: the train step, prefill, decode.

Each function returns a ``Program``: its name, the ``jax.stages.Lowered`` and the project's own
model-FLOP count for one call (jaxlvlm.train.flops), so MFU is the project's FLOPs over XLA's time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from jaxlvlm import sharding as shd
from jaxlvlm.data import batch as B
from jaxlvlm.models.config import LVLMConfig
from jaxlvlm.train import flops as F
from jaxlvlm.train import setup as S
from tools.aot.abstract import abstract_batch
from tools.aot.context import AotContext

# Generation is compiled for this many new tokens (the cache length is the bucket plus these).
DECODE_NEW_TOKENS = 128


@dataclasses.dataclass
class Program:
    """One compiled function of a recipe: name, lowering, model FLOPs and tokens per call."""

    name: str
    lowered: jax.stages.Lowered
    model_flops: float
    tokens: int


def tracing_context(ctx: AotContext):
    """The mesh and logical rules in force while tracing: the trainer's own context
    (jaxlvlm.sharding.mesh_context: ``jax.set_mesh`` plus the rules, activation constraints
    applied), so a compile here is the program the run compiles."""
    return shd.mesh_context(ctx.mesh, ctx.rules)


def train_step_flops(ctx: AotContext) -> float:
    b = ctx.batch
    return F.train_step_flops(ctx.model_cfg, b.rows, b.length, b.image_slots)


def lower_train_step(
    ctx: AotContext,
    *,
    name: str = "train_step",
    num_tasks: int = 1,
    method_state: dict | None = None,
    lora_init: Callable | None = None,
    forward_fn: Callable | None = None,
    loss_fn: Callable | None = None,
    model_flops: float | None = None,
) -> Program:
    """The trainer's jitted step (jaxlvlm.train.setup.jit_train_step) over the abstract state.

    jit_train_step returns a dispatcher that jits per batch structure; tracing it inside one outer
    jit with the state donated lowers exactly that inner jit (its shardings and donation) once.
    """
    setup = S.plan_train_state(
        ctx.model,
        ctx.model_cfg,
        ctx.config,
        ctx.mesh,
        ctx.rules,
        method_state=method_state,
        lora_init=lora_init,
    )
    step = S.jit_train_step(
        ctx.model,
        setup,
        ctx.config,
        ctx.mesh,
        ctx.rules,
        num_tasks,
        loss_fn=loss_fn,
        forward_fn=forward_fn,
    )
    batch = abstract_batch(ctx.batch, ctx.model_cfg, ctx.mesh)
    with tracing_context(ctx):
        lowered = jax.jit(step, donate_argnums=(0,)).lower(setup.abstract, batch)
    flops = train_step_flops(ctx) if model_flops is None else model_flops
    return Program(name, lowered, flops, ctx.batch.tokens)


def _param_shapes(ctx: AotContext):
    """Abstract parameters (compute-time layout of the train state) with their shardings."""
    setup = S.plan_train_state(ctx.model, ctx.model_cfg, ctx.config, ctx.mesh, ctx.rules)
    return setup.abstract.params


def _prompt_inputs(ctx: AotContext) -> dict:
    batch = abstract_batch(ctx.batch, ctx.model_cfg, ctx.mesh)
    keep = (B.INPUT_IDS, B.ATTENTION_MASK, B.PIXEL_VALUES, B.NUM_IMAGES)
    return {k: v for k, v in batch.items() if k in keep}


def _forward_flops(ctx: AotContext, length: int, rows: int) -> float:
    """Forward-only FLOPs (a third of a train step's) for ``rows`` sequences of ``length``."""
    cfg = ctx.model_cfg
    slots = ctx.batch.image_slots if length > 1 else 0
    return F.train_step_flops(cfg, rows, length, slots) / 3.0


def lower_prefill(ctx: AotContext) -> Program:
    """Generation's prefill: the prompt batch -> last-position logits and a KV cache with room for
    DECODE_NEW_TOKENS more (the model's own ``prefill`` method, as jaxlvlm.eval.generate runs it)."""
    params = _param_shapes(ctx)
    max_length = ctx.batch.length + DECODE_NEW_TOKENS

    def prefill(params, inputs):
        last = jnp.maximum(jnp.sum(inputs[B.ATTENTION_MASK], axis=-1) - 1, 0)
        extra = {k: inputs[k] for k in (B.PIXEL_VALUES, B.NUM_IMAGES) if k in inputs}
        return ctx.model.apply(
            {"params": params},
            inputs[B.INPUT_IDS],
            inputs[B.ATTENTION_MASK],
            max_length=max_length,
            logits_at=last,
            method="prefill",
            **extra,
        )

    with tracing_context(ctx):
        lowered = jax.jit(prefill).lower(params, _prompt_inputs(ctx))
    flops = _forward_flops(ctx, ctx.batch.length, ctx.batch.rows)
    return Program("prefill", lowered, flops, ctx.batch.tokens)


def _cache_sharding(mesh, shape: tuple[int, ...]) -> NamedSharding:
    """A cache buffer [B, K, T, D] split by rows over the batch axes and by kv heads over 'tensor'
    when they divide (decode then needs no gather of the cache); ``length`` [B] by rows."""
    heads = "tensor" if len(shape) == 4 and shape[1] % mesh.shape["tensor"] == 0 else None
    rest = [heads, None, None] if len(shape) == 4 else [None] * (len(shape) - 1)
    return NamedSharding(mesh, PartitionSpec(shd.BATCH_AXES, *rest))


def lower_decode(ctx: AotContext) -> Program:
    """One decode step: a token per row and the KV cache of a prefilled prompt batch -> logits and
    the cache one longer, the cache donated as generation's scan carries it."""
    params = _param_shapes(ctx)
    inputs = _prompt_inputs(ctx)
    max_length = ctx.batch.length + DECODE_NEW_TOKENS
    extra = {k: inputs[k] for k in (B.PIXEL_VALUES, B.NUM_IMAGES) if k in inputs}
    _, cache = jax.eval_shape(
        lambda p, i: ctx.model.apply(
            {"params": p},
            i[B.INPUT_IDS],
            i[B.ATTENTION_MASK],
            max_length=max_length,
            method="prefill",
            **{k: i[k] for k in extra},
        ),
        params,
        inputs,
    )
    cache = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(
            a.shape, a.dtype, sharding=_cache_sharding(ctx.mesh, a.shape)
        ),
        cache,
    )
    tokens = abstract_batch(ctx.batch, ctx.model_cfg, ctx.mesh)[B.TASK_IDS]

    def decode(params, token_ids, cache):
        return ctx.model.apply({"params": params}, token_ids, cache, method="decode")

    with tracing_context(ctx):
        lowered = jax.jit(decode, donate_argnums=(2,)).lower(params, tokens, cache)
    # One new token per row; attention over the cache is not in the matmul count.
    text = ctx.model_cfg.text if isinstance(ctx.model_cfg, LVLMConfig) else ctx.model_cfg
    flops = ctx.batch.rows * F.text_flops(text, 1)
    return Program("decode_step", lowered, flops, ctx.batch.rows)
