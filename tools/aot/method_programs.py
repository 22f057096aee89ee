"""Which programs a recipe compiles, and the methods' own jitted functions: CoTBal's task-weighted
step, Continual LLaVA's pool step, Adapt-inf's per-sample feature pass and a Pilot client step.

Each lowers the method's real function (jaxlvlm.methods.*, the trainer's jit_train_step) over
abstract state; the settings come from ``config.method`` with the method's own key names.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from jaxlvlm.models.config import LVLMConfig
from jaxlvlm.train import setup as S
from jaxlvlm.train.lora import init_lora
from tools.aot.abstract import abstract_batch
from tools.aot.context import AotContext
from tools.aot.programs import (
    Program,
    lower_decode,
    lower_prefill,
    lower_train_step,
    tracing_context,
    train_step_flops,
)

# The programs each runner mode runs at scale (the recipe's AOT['programs'] overrides).
MODE_PROGRAMS = {
    "train": ("train_step",),
    "multitask": ("cotbal_step",),
    "continual": ("pool_step",),
    "lifelong": ("sample_features", "train_step"),
    "federated": ("pilot_client_step",),
}


def _method(ctx: AotContext, key: str, default=None):
    m = ctx.config.method
    if key in m:
        return m[key]
    if default is None:
        raise ValueError(f"config.method.{key} is needed to compile this method's program; set it")
    return default


def _text(ctx: AotContext):
    return ctx.model_cfg.text if isinstance(ctx.model_cfg, LVLMConfig) else ctx.model_cfg


def lower_cotbal_step(ctx: AotContext) -> Program:
    """CoTBal's final run: the trainer's step with per-task loss weights lambda [T] in the method
    state (jaxlvlm.train.losses.token_weighted_nll reads them); T = len(config.data.tasks)."""
    num_tasks = len(ctx.config.data.tasks)
    if num_tasks < 2:
        raise ValueError("config.data.tasks must name the balanced tasks (>= 2) for cotbal_step")
    weights = {"task_weights": jnp.ones((num_tasks,), jnp.float32)}
    return lower_train_step(ctx, name="cotbal_step", num_tasks=num_tasks, method_state=weights)


def lower_pool_step(ctx: AotContext) -> Program:
    """Continual LLaVA's stage-2 step: the pool (keys, a/b per layer and entry, u) is the trainable
    low-rank state, the memory of finished tasks the method state, the forward the runner's pool
    forward on every layer's o_proj (jaxlvlm.methods.continual_llava.training.make_pool_forward). Compiled at the
    last task of the stream (all method.max_tasks - 1 snapshots active: the most work)."""
    from jaxlvlm.methods import prompt_pool as pp
    from jaxlvlm.methods.continual_llava.training import make_pool_forward

    text = _text(ctx)
    pcfg = pp.PoolConfig(
        pool_size=int(_method(ctx, "pool_size")),
        top_m=int(_method(ctx, "top_m")),
        rank=int(_method(ctx, "pool_rank")),
        embed_dim=text.hidden_size,  # the mean of the frozen LLM's input embeddings
        num_layers=text.num_layers,
        d_in=text.num_heads * text.resolved_head_dim,
        d_out=text.hidden_size,
        max_tasks=int(_method(ctx, "max_tasks")),
    )
    memory = pp.init_memory(pcfg)
    forward = make_pool_forward(
        ctx.model, pcfg, ctx.model_cfg.image_token_id, num_active=pcfg.max_tasks - 1
    )
    return lower_train_step(
        ctx,
        name="pool_step",
        method_state=memory,
        lora_init=lambda r: pp.init_pool(r, pcfg),
        forward_fn=forward,
    )


def _frozen_params(ctx: AotContext):
    setup = S.plan_train_state(ctx.model, ctx.model_cfg, ctx.config, ctx.mesh, ctx.rules)
    return setup.abstract.params


def _replicated(ctx: AotContext, tree):
    rep = NamedSharding(ctx.mesh, PartitionSpec())
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), tree
    )


def lower_sample_features(ctx: AotContext) -> Program:
    """Adapt-inf's per-sample feature pass (jaxlvlm.methods.adapt_inf.model_features.batch_features):
    per-sample gradients of one layer's LoRA, Rademacher-projected to method.proj_dim, plus the
    scorers' two forwards (with and without the image tokens)."""
    from jaxlvlm.methods.adapt_inf.model_features import batch_features

    text = _text(ctx)
    lora_cfg = ctx.config.lora
    lora = jax.eval_shape(
        lambda r: init_lora(r, text, list(lora_cfg.targets), lora_cfg.rank), jax.random.PRNGKey(0)
    )
    fn = functools.partial(
        batch_features,
        ctx.model,
        layer=int(_method(ctx, "grad_layer", text.num_layers - 1)),
        alpha=float(lora_cfg.alpha),
        dim=int(_method(ctx, "proj_dim")),
        image_token_id=ctx.model_cfg.image_token_id,
        # 'vmap' (the default) or 'mixture', as the runner passes AdaptInfSettings.grad_mode.
        grad_mode=str(_method(ctx, "grad_mode", "vmap")),
    )
    # The runner scores the stream method.feature_batch rows at a time.
    rows = int(_method(ctx, "feature_batch", ctx.batch.rows))
    shape = dataclasses.replace(ctx.batch, rows=rows)
    batch = abstract_batch(shape, ctx.model_cfg, ctx.mesh)
    key = _replicated(ctx, jax.eval_shape(lambda: jax.random.PRNGKey(0)))
    # Planned outside the tracing context: planning runs small eager ops (the init key), which
    # under jax.set_mesh would be placed on the mesh's devices, here abstract TPU ones.
    params = _frozen_params(ctx)
    with tracing_context(ctx):
        lowered = jax.jit(fn).lower(params, _replicated(ctx, lora), batch, key)
    # Per sample: forward + backward for the gradient (3 forwards) and two scoring forwards.
    flops = train_step_flops(ctx) * 5.0 / 3.0 * rows / ctx.batch.rows
    return Program("sample_features", lowered, flops, shape.tokens)


def lower_pilot_client_step(ctx: AotContext) -> Program:
    """One local step of a Pilot stage-1 client (jaxlvlm.methods.pilot.programs.stage1_program):
    task + client adapters and the LLM's LoRA trained, the frozen CLIP + LLM shared. The recipe's
    model.connector must be 'pilot_stage1'."""
    from jaxlvlm.methods.pilot import programs as PG

    if ctx.model_cfg.connector != "pilot_stage1":
        raise ValueError(
            "pilot_client_step needs config.model.connector='pilot_stage1' (Pilot's stage-1 "
            f"adapters), got {ctx.model_cfg.connector!r}"
        )
    lora_cfg = ctx.config.lora
    lt = PG.LocalTraining(ctx.model, lora_alpha=float(lora_cfg.alpha), aux="stage1")
    program = PG.stage1_program(lt)
    params = _frozen_params(ctx)
    frozen = {k: v for k, v in params.items() if k != "connector"}
    conn = params["connector"]
    lora = jax.eval_shape(
        lambda r: init_lora(r, _text(ctx), list(lora_cfg.targets), lora_cfg.rank),
        jax.random.PRNGKey(0),
    )
    payload = {"task_adapter": conn["task_adapter"], "lora": lora}
    client_state = {"client_adapter": conn["client_adapter"]}
    local = jax.eval_shape(program.init, payload, client_state, jax.random.PRNGKey(0))
    local = _replicated(ctx, local)
    batch = abstract_batch(ctx.batch, ctx.model_cfg, ctx.mesh)
    batch = {k: batch[k] for k in PG.BATCH_KEYS}
    with tracing_context(ctx):
        lowered = jax.jit(program.step, donate_argnums=(0,)).lower(local, batch, frozen)
    return Program("pilot_client_step", lowered, train_step_flops(ctx), ctx.batch.tokens)


def program_builders() -> dict[str, Callable[[AotContext], Program]]:
    return {
        "train_step": lower_train_step,
        "prefill": lower_prefill,
        "decode_step": lower_decode,
        "cotbal_step": lower_cotbal_step,
        "pool_step": lower_pool_step,
        "sample_features": lower_sample_features,
        "pilot_client_step": lower_pilot_client_step,
    }


def default_programs(config) -> list[str]:
    """The programs of the config's mode (train_step for any mode not listed)."""
    return list(MODE_PROGRAMS.get(config.mode, ("train_step",)))
