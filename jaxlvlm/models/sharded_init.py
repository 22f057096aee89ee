"""Parameters born sharded: abstract init (jax.eval_shape), logical axes -> NamedShardings through the
rules table, then a jitted init whose out_shardings place every array where it belongs, so no device
ever holds the whole model."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax.sharding import Mesh

from jaxlvlm.models.config import LVLMConfig, TextConfig, VisionConfig
from jaxlvlm.sharding import DEFAULT_RULES


def init_inputs(config: LVLMConfig | TextConfig | VisionConfig) -> dict[str, jax.Array]:
    """The smallest keyword inputs that build every parameter of ``build_model(config)``."""
    if isinstance(config, VisionConfig):
        shape = (1, config.image_size, config.image_size, config.num_channels)
        return {"pixel_values": jnp.zeros(shape, jnp.float32)}
    return {"input_ids": jnp.zeros((1, 1), jnp.int32)}


def abstract_params(model: nn.Module, config: LVLMConfig | TextConfig | VisionConfig) -> Any:
    """Boxed (nn.Partitioned) abstract parameter tree of ``model`` (no memory allocated)."""
    inputs = init_inputs(config)
    return jax.eval_shape(lambda rng: model.init(rng, **inputs), jax.random.key(0))["params"]


def param_shardings(
    model: nn.Module,
    config: LVLMConfig | TextConfig | VisionConfig,
    mesh: Mesh,
    rules=DEFAULT_RULES,
) -> Any:
    """NamedSharding per parameter (an unboxed tree matching the params), from its logical axes."""
    specs = nn.get_partition_spec(abstract_params(model, config))
    return nn.logical_to_mesh_sharding(specs, mesh, list(rules))


def init_params_sharded(
    model: nn.Module,
    config: LVLMConfig | TextConfig | VisionConfig,
    rng: jax.Array,
    mesh: Mesh,
    rules=DEFAULT_RULES,
) -> Any:
    """Random init with every parameter created directly in its sharding -> unboxed params tree."""
    shardings = param_shardings(model, config, mesh, rules)
    inputs = init_inputs(config)
    init = jax.jit(lambda r: nn.unbox(model.init(r, **inputs)["params"]), out_shardings=shardings)
    return init(rng)


def place_params(params: Any, shardings: Any) -> Any:
    """Puts host (numpy) params, e.g. from load_pretrained, onto the mesh with ``shardings``."""
    return jax.device_put(params, shardings)
