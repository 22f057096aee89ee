"""Pilot's connectors, registered in the connector registry (docs/methods.md section 4(b)).

``pilot_stage1``: x_img = ψ_t(H_v) + ψ_s(H_v) (task-specific + client-specific adapter); sows the
per-image difference loss L_d = ||x_tᵀ x_s||_F² (eq. 14, N x N form) as 'pilot_difference_loss' [M].

``pilot_ctmoa``: the cross-task mixture of adapters (eq. 15) of a client whose own task is slot 0:
h_0 = ψ^t_own(H_v); h_i = ψ^t_i(H_v) + ψ^c_i(H_v) for the T-1 other tasks; z = φ(H_v) per token,
P = softmax(z); x_img = Σ_i P_i h_i + ψ_s(H_v). Sows the router logits z [M, N, T] as
'pilot_router_logits'. The other tasks' adapters and ψ_s are frozen: their outputs pass through
stop_gradient here, and the optimiser masks them (``stage2_trainable``) so they stay bitwise equal.

Parameter names: ψ_t uses linear_1 / linear_2 like ``mlp2x_gelu``, so a pretrained LLaVA projector
loads into it as is. ψ_s and ψ^c start with a zero last layer ([O]), so at initialisation the
connector equals ψ_t alone.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxlvlm.models.activations import get_activation
from jaxlvlm.models.connector import register_connector

_KERNEL_INIT = nn.initializers.normal(stddev=0.02)

DIFFERENCE_LOSS = "pilot_difference_loss"
ROUTER_LOGITS = "pilot_router_logits"


def difference_loss(x_t: jax.Array, x_s: jax.Array) -> jax.Array:
    """L_d = ||x_tᵀ x_s||_F² per image via the N x N form Σ (x_t x_tᵀ) ⊙ (x_s x_sᵀ).

    x_t, x_s [M, N, C] -> [M] float32. Equal to ``difference_loss_direct``; cheaper when N < C
    (LLaVA-1.5: N = 576 tokens, C = 4096 channels).
    """
    x_t = x_t.astype(jnp.float32)
    x_s = x_s.astype(jnp.float32)
    gram_t = jnp.einsum("mic,mjc->mij", x_t, x_t)
    gram_s = jnp.einsum("mic,mjc->mij", x_s, x_s)
    return jnp.sum(gram_t * gram_s, axis=(1, 2))


class AdapterMLP(nn.Module):
    """Linear(in -> hidden) - act - Linear(hidden -> out), per token; optional zero last layer."""

    hidden_dim: int
    out_dim: int
    bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    act: str = "gelu"
    zero_last: bool = False

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        """features [M, T, in_dim] -> [M, T, out_dim]."""
        last_init = nn.initializers.zeros if self.zero_last else _KERNEL_INIT
        h = nn.Dense(
            self.hidden_dim,
            use_bias=self.bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.with_logical_partitioning(_KERNEL_INIT, ("vit_embed", "mlp")),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)),
            name="linear_1",
        )(features)
        h = get_activation(self.act)(h)
        return nn.Dense(
            self.out_dim,
            use_bias=self.bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.with_logical_partitioning(last_init, ("mlp", "embed")),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
            name="linear_2",
        )(h)


def _stacked_adapters(count: int):
    """``count`` independent AdapterMLPs applied to the same input: params get a leading axis."""
    return nn.vmap(
        AdapterMLP,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=None,
        out_axes=0,
        axis_size=count,
        metadata_params={nn.PARTITION_NAME: "experts"},
    )


@register_connector("pilot_stage1")
class PilotStage1Connector(nn.Module):
    """Stage 1: task adapter ψ_t + client adapter ψ_s; sows the difference loss per image."""

    in_dim: int
    out_dim: int
    bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    hidden_dim: int = 0  # 0 = out_dim, as LLaVA's mlp2x_gelu projector
    act: str = "gelu"

    @nn.compact
    def __call__(self, features: jax.Array, deterministic: bool = True) -> jax.Array:
        """features [M, N, in_dim] -> x_img [M, N, out_dim]."""
        hidden = self.hidden_dim or self.out_dim
        kw = dict(
            out_dim=self.out_dim,
            bias=self.bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            act=self.act,
        )
        x_t = AdapterMLP(hidden, name="task_adapter", **kw)(features)
        x_s = AdapterMLP(hidden, zero_last=True, name="client_adapter", **kw)(features)
        self.sow("intermediates", DIFFERENCE_LOSS, difference_loss(x_t, x_s))
        return x_t + x_s


@register_connector("pilot_ctmoa")
class PilotCTMoAConnector(nn.Module):
    """Stage 2: cross-task mixture of adapters (own task in slot 0) plus the frozen client adapter."""

    in_dim: int
    out_dim: int
    bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    num_tasks: int = 2
    hidden_dim: int = 0  # of the task / client adapters; 0 = out_dim
    cross_hidden_dim: int = 256  # of the cross-task adapters ψ^c ([O])
    act: str = "gelu"

    @nn.compact
    def __call__(self, features: jax.Array, deterministic: bool = True) -> jax.Array:
        """features [M, N, in_dim] -> x_img [M, N, out_dim]."""
        if self.num_tasks < 2:
            raise ValueError(
                f"pilot_ctmoa needs num_tasks >= 2 (got {self.num_tasks}); with one task use pilot_stage1"
            )
        hidden = self.hidden_dim or self.out_dim
        kw = dict(
            out_dim=self.out_dim,
            bias=self.bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            act=self.act,
        )
        others = self.num_tasks - 1
        h_own = AdapterMLP(hidden, name="own_task_adapter", **kw)(features)
        h_frozen = _stacked_adapters(others)(hidden, name="other_task_adapters", **kw)(features)
        h_cross = _stacked_adapters(others)(
            self.cross_hidden_dim, zero_last=True, name="cross_adapters", **kw
        )(features)
        x_s = AdapterMLP(hidden, zero_last=True, name="client_adapter", **kw)(features)
        h_others = jax.lax.stop_gradient(h_frozen) + h_cross  # [T-1, M, N, C]
        experts = jnp.concatenate([h_own[None], h_others], axis=0)  # [T, M, N, C]
        z = nn.Dense(
            self.num_tasks,
            use_bias=self.bias,
            dtype=jnp.float32,
            param_dtype=self.param_dtype,
            kernel_init=nn.with_logical_partitioning(_KERNEL_INIT, ("vit_embed", "experts")),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("experts",)),
            name="router",
        )(features)  # [M, N, T], router in float32 for a stable softmax
        self.sow("intermediates", ROUTER_LOGITS, z)
        probs = jax.nn.softmax(z, axis=-1).astype(experts.dtype)
        mixed = jnp.einsum("mnt,tmnc->mnc", probs, experts)
        return mixed + jax.lax.stop_gradient(x_s)


STAGE1_TRAINABLE = ("task_adapter", "client_adapter")
STAGE2_TRAINABLE = ("own_task_adapter", "cross_adapters", "router")


def connector_trainable_mask(connector_params: dict, stage: str) -> dict:
    """Pytree of bools (True = trainable) over a Pilot connector's params for 'stage1' / 'stage2'.

    Feed it to ``optax.masked`` / ``multi_transform`` so frozen adapters get no update at all
    (weight decay included) and stay bitwise unchanged.
    """
    trainable = {"stage1": STAGE1_TRAINABLE, "stage2": STAGE2_TRAINABLE}.get(stage)
    if trainable is None:
        raise ValueError(f"unknown Pilot stage '{stage}'; expected 'stage1' or 'stage2'")
    return {
        name: jax.tree_util.tree_map(lambda _, on=name in trainable: on, sub)
        for name, sub in connector_params.items()
    }


# The connectors this module registers (the LVLM imports it so a checkpoint naming one loads).
PILOT_CONNECTORS = ("pilot_stage1", "pilot_ctmoa")
