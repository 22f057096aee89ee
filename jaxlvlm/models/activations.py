"""Activation functions by their Hugging Face names (``hidden_act`` / ``projector_hidden_act``)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def quick_gelu(x: jax.Array) -> jax.Array:
    """CLIP's sigmoid approximation of gelu: x * sigmoid(1.702 x)."""
    return x * jax.nn.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "quick_gelu": quick_gelu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Returns the activation called ``name`` in transformers' ACT2FN; unknown names are an error."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}'; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
