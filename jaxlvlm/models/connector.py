"""Connectors (vision features -> LLM embeddings) and the registry methods add their own to.

A connector is a linen module with fields ``in_dim, out_dim, bias, dtype, param_dtype`` (plus its own
keyword fields, filled from ``LVLMConfig.connector_kwargs``), called as
``module(features [M, T, in_dim], deterministic=True, **connector_inputs) -> [M, T', out_dim]``.
Auxiliary outputs (router logits, ...) go through ``self.sow('intermediates', name, value)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxlvlm.models.activations import get_activation

CONNECTORS: dict[str, type[nn.Module]] = {}

_KERNEL_INIT = nn.initializers.normal(stddev=0.02)


def register_connector(name: str):
    """Class decorator: registers a connector module under ``name`` (names are unique)."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if name in CONNECTORS and CONNECTORS[name] is not cls:
            raise ValueError(
                f"connector '{name}' is already registered ({CONNECTORS[name].__name__})"
            )
        required = {"in_dim", "out_dim", "bias", "dtype", "param_dtype"}
        fields = {f.name for f in dataclasses.fields(cls)}
        if not required <= fields:
            raise TypeError(f"connector {cls.__name__} lacks fields {sorted(required - fields)}")
        CONNECTORS[name] = cls
        return cls

    return wrap


def make_connector(
    name: str,
    in_dim: int,
    out_dim: int,
    bias: bool = True,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    **kwargs: Any,
) -> nn.Module:
    """Builds the registered connector ``name``; unknown names / keyword fields are named in the error."""
    if name not in CONNECTORS:
        raise KeyError(f"unknown connector '{name}'; registered connectors: {sorted(CONNECTORS)}")
    cls = CONNECTORS[name]
    fields = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise TypeError(
            f"connector '{name}' has no fields {unknown}; its fields are {sorted(fields)} "
            "(set through LVLMConfig.connector_kwargs)"
        )
    return cls(
        in_dim=in_dim,
        out_dim=out_dim,
        bias=bias,
        dtype=jnp.dtype(dtype),
        param_dtype=jnp.dtype(param_dtype),
        **kwargs,
    )


def _dense(mod: nn.Module, features: int, names: tuple[str, str], name: str) -> nn.Dense:
    return nn.Dense(
        features,
        use_bias=mod.bias,
        dtype=mod.dtype,
        param_dtype=mod.param_dtype,
        kernel_init=nn.with_logical_partitioning(_KERNEL_INIT, names),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (names[1],)),
        name=name,
    )


@register_connector("linear")
class LinearConnector(nn.Module):
    """One linear map per token (LLaVA-1's projector)."""

    in_dim: int
    out_dim: int
    bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array, deterministic: bool = True) -> jax.Array:
        """features: [M, T, in_dim] -> [M, T, out_dim]."""
        return _dense(self, self.out_dim, ("vit_embed", "embed"), "linear")(features)


@register_connector("mlp2x_gelu")
class MLP2xGeluConnector(nn.Module):
    """LLaVA-1.5's projector: linear_1 -> gelu -> linear_2 (transformers' LlavaMultiModalProjector)."""

    in_dim: int
    out_dim: int
    bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    act: str = "gelu"  # transformers' projector_hidden_act

    @nn.compact
    def __call__(self, features: jax.Array, deterministic: bool = True) -> jax.Array:
        """features: [M, T, in_dim] -> [M, T, out_dim]."""
        h = _dense(self, self.out_dim, ("vit_embed", "mlp"), "linear_1")(features)
        h = get_activation(self.act)(h)
        return _dense(self, self.out_dim, ("mlp", "embed"), "linear_2")(h)
