"""Named phases of a run before the loop: mesh, model config, model, train state (born sharded).

Parameters are initialised through ``jax.eval_shape`` (no memory) to learn their shapes and logical
axes, then created by a jitted init with ``out_shardings``: no device ever holds the full model
unless the rules say so.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh

from jaxlvlm import sharding as shd
from jaxlvlm.models import build_model
from jaxlvlm.models.apply import apply_batch
from jaxlvlm.models.config import (
    LVLMConfig,
    RuntimeConfig,
    TextConfig,
    lvlm_config_from_dict,
    runtime_config_from_dict,
)
from jaxlvlm.train.chunked_loss import chunked_step_kwargs
from jaxlvlm.train.lora import init_lora, lowrank_of
from jaxlvlm.train.losses import get_loss
from jaxlvlm.train.optimizer import frozen_mask, make_optimizer
from jaxlvlm.train.state import TrainState
from jaxlvlm.train.step import make_train_step


def mesh_from_config(config) -> tuple[Mesh, tuple]:
    """The ('data', 'fsdp', 'tensor') mesh over all global devices, and the logical-axis rules."""
    mesh = shd.make_mesh(tuple(config.mesh.shape))
    rules = shd.rules_from_config(list(config.mesh.rules) or None)
    return mesh, rules


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def model_config_from(config, tokenizer=None) -> LVLMConfig:
    """LVLMConfig from ``config.model``; vocab_size 0 and image_token_id -1 are taken from the
    tokenizer (the vocabulary is rounded up to a multiple of 64 so it shards evenly)."""
    m = config.model.to_dict()
    text = dict(m.pop("text"))
    if text.get("vocab_size", 0) <= 0:
        if tokenizer is None:
            raise ValueError("config.model.text.vocab_size=0 needs a tokenizer to take it from")
        text["vocab_size"] = _round_up(len(tokenizer), 64)
    if m.get("image_token_id", -1) < 0:
        if tokenizer is None:
            raise ValueError("config.model.image_token_id=-1 needs a tokenizer to take it from")
        tid = tokenizer.convert_tokens_to_ids("<image>")
        if tid is None or tid == tokenizer.unk_token_id:
            raise ValueError(
                "the tokenizer has no '<image>' token; set config.model.image_token_id explicitly"
            )
        m["image_token_id"] = int(tid)
    m["text"] = text
    return lvlm_config_from_dict(m)


def runtime_from(config) -> RuntimeConfig:
    return runtime_config_from_dict(config.runtime.to_dict())


def build(cfg: LVLMConfig | TextConfig, runtime: RuntimeConfig) -> nn.Module:

    return build_model(cfg, runtime=runtime)


def dummy_inputs(cfg: LVLMConfig | TextConfig, length: int = 8) -> dict:
    """Smallest inputs that trace every parameter (one image slot for an LVLM)."""
    ids = jnp.zeros((1, length), jnp.int32)
    out = {"input_ids": ids, "attention_mask": jnp.ones_like(ids)}
    if isinstance(cfg, LVLMConfig):
        v = cfg.vision
        out["pixel_values"] = jnp.zeros((1, 1, v.image_size, v.image_size, 3), jnp.float32)
        out["num_images"] = jnp.zeros((1,), jnp.int32)
    return out


def make_forward(model: nn.Module, lora_alpha: float, compute_logits: bool = True) -> Callable:
    """forward(params, lora, batch, method_state, rng) -> logits [B, L, V] float32 (final hidden
    states [B, L, C] with compute_logits=False, for the chunked loss)."""

    def forward(params, lora, batch, method_state, rng):
        del method_state, rng
        lowrank = lowrank_of(lora, lora_alpha)
        return apply_batch(model, params, batch, lowrank=lowrank, compute_logits=compute_logits)

    return forward


@dataclasses.dataclass
class StateSetup:
    """The train state's layout before any memory is used: shardings, optimizer, labels, and
    ``create(params=None)`` that makes the state born sharded (or ``abstract`` for a restore)."""

    shardings: TrainState
    abstract: TrainState  # ShapeDtypeStructs carrying the shardings
    labels: Any
    tx: Any
    schedule: Any
    param_shardings: Any
    create: Callable[..., TrainState]


def plan_train_state(
    model: nn.Module,
    cfg: LVLMConfig | TextConfig,
    config,
    mesh: Mesh,
    rules,
    *,
    method_state: dict | None = None,
    lora_init: Callable[[jax.Array], Any] | None = None,
) -> StateSetup:
    """Lays out the train state over ``mesh`` through jax.eval_shape (no parameter memory).

    lora_init: optional ``rng -> tree`` replacing config.lora's factors in the ``lora`` slot (a
    method's own trainable low-rank state, e.g. the prompt pool); it must be deterministic.

    ``create()`` initialises with the model's own init (``config.seed``); ``create(params)`` starts
    from pretrained parameters (e.g. from ``load_converted``). method_state: the initial method
    state (host arrays, replicated); its structure is fixed from here on.
    """
    rng = jax.random.PRNGKey(config.seed)
    init_rng, lora_rng, state_rng = jax.random.split(rng, 3)
    inputs = dummy_inputs(cfg)
    boxed = jax.eval_shape(lambda r: model.init(r, **inputs), init_rng)["params"]
    param_shardings = shd.params_sharding(boxed, mesh, rules)
    abstract_params = nn.meta.unbox(boxed)
    text = cfg.text if isinstance(cfg, LVLMConfig) else cfg
    lora_on = bool(config.lora.enabled)

    def make_lora(r):
        if lora_init is not None:
            return lora_init(r)
        return init_lora(r, text, list(config.lora.targets), config.lora.rank) if lora_on else {}

    abstract_lora = jax.eval_shape(make_lora, lora_rng)
    trainable = {"params": abstract_params, "lora": abstract_lora}
    tx, labels, schedule = make_optimizer(trainable, config.optim, config.train.steps)
    trainable_shardings = {
        "params": param_shardings,
        "lora": shd.replicated_like(abstract_lora, mesh),
    }
    method_state = jax.tree_util.tree_map(jnp.asarray, method_state or {})
    rep = shd.replicated(mesh)

    def build_state(p, ms):
        if p is None:
            p = nn.meta.unbox(model.init(init_rng, **inputs)["params"])
        lora = make_lora(lora_rng)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=p,
            lora=lora,
            opt_state=tx.init({"params": p, "lora": lora}),
            rng=state_rng,
            method_state=ms,
        )

    abstract_state = jax.eval_shape(build_state, abstract_params, method_state)
    shardings = TrainState(
        step=rep,
        params=param_shardings,
        lora=trainable_shardings["lora"],
        opt_state=shd.opt_state_shardings(abstract_state.opt_state, trainable_shardings, mesh),
        rng=rep,
        method_state=shd.replicated_like(method_state, mesh),
    )
    abstract = shd.abstract_like(abstract_state, shardings)

    def create(params: Any = None) -> TrainState:
        with shd.mesh_context(mesh, rules):
            if params is None:
                return jax.jit(lambda ms: build_state(None, ms), out_shardings=shardings)(
                    method_state
                )
            _check_params(params, abstract_params)
            return jax.jit(build_state, out_shardings=shardings)(params, method_state)

    return StateSetup(
        shardings=shardings,
        abstract=abstract,
        labels=labels,
        tx=tx,
        schedule=schedule,
        param_shardings=param_shardings,
        create=create,
    )


def _check_params(params: Any, abstract: Any) -> None:
    got = jax.tree_util.tree_flatten_with_path(params)[0]
    want = dict(jax.tree_util.tree_flatten_with_path(abstract)[0])
    got_d = dict(got)
    missing = [jax.tree_util.keystr(k) for k in want if k not in got_d]
    extra = [jax.tree_util.keystr(k) for k in got_d if k not in want]
    if missing or extra:
        raise ValueError(
            f"init_from parameters do not fit the model: missing {missing[:5]}, unexpected "
            f"{extra[:5]}; is config.model the architecture of the converted checkpoint?"
        )
    for k, v in got:
        if tuple(v.shape) != tuple(want[k].shape):
            raise ValueError(
                f"init_from parameter {jax.tree_util.keystr(k)} has shape {tuple(v.shape)}, the "
                f"model expects {tuple(want[k].shape)}"
            )


def jit_train_step(
    model: nn.Module,
    setup: StateSetup,
    config,
    mesh: Mesh,
    rules,
    num_tasks: int,
    *,
    loss_fn: Callable | None = None,
    forward_fn: Callable | None = None,
) -> Callable:
    """The jitted ``train_step(state, batch)`` with state shardings in and out, the batch sharded
    over ('data', 'fsdp'), metrics replicated and the old state donated."""

    chunked = chunked_step_kwargs(model, config, forward_fn, loss_fn)
    step = make_train_step(
        forward_fn or make_forward(model, config.lora.alpha, compute_logits=not chunked),
        setup.tx,
        frozen_mask(setup.labels),
        num_tasks=num_tasks,
        grad_accum=config.train.grad_accum,
        loss_fn=loss_fn or get_loss(config.train.loss),
        schedule=setup.schedule,
        **chunked,
    )
    compiled: dict[tuple, Callable] = {}
    rep = shd.replicated(mesh)

    def run(state: TrainState, batch: dict):
        key = tuple(sorted((k, np.ndim(v)) for k, v in batch.items()))
        if key not in compiled:
            batch_sh = {k: shd.batch_sharding(mesh, nd) for k, nd in key}
            compiled[key] = jax.jit(
                step,
                in_shardings=(setup.shardings, batch_sh),
                out_shardings=(setup.shardings, rep),
                donate_argnums=(0,),
            )
        with shd.mesh_context(mesh, rules):
            return compiled[key](state, batch)

    return run


def log_devices(mesh: Mesh) -> None:
    logging.info(
        "mesh %s over %d devices (%d processes)",
        dict(mesh.shape),
        mesh.devices.size,
        jax.process_count(),
    )
