"""Tiny decoder configs and seeded random parameters for the decoder tests.

Parameters are drawn with numpy into the shapes of eval_shape(init): compiling jax's threefry
initialisers costs seconds per parameter on the 2-core CI machine, and these tests need values, not
the initialiser.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxlvlm.models.config import RuntimeConfig, TextConfig
from jaxlvlm.models.decoder import CausalLM

GQA = TextConfig(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    rope_theta=10000.0,
)
QWEN_TIED = TextConfig(
    arch="qwen2",
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=1,
    attention_bias=True,
    tie_word_embeddings=True,
)


def random_params(cfg: TextConfig, scan: bool = False, seed: int = 0) -> dict:
    """Unboxed float32 params for CausalLM(cfg) in the loop or scan layout; norm scales ~ 1 + noise,
    other leaves ~ N(0, 0.1^2)."""
    model = CausalLM(cfg, RuntimeConfig(scan_layers=scan))
    shapes = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32)))
    rng = np.random.RandomState(seed)

    def fill(path, leaf):
        noise = rng.normal(size=leaf.shape).astype(np.float32)
        return jnp.asarray(1.0 + 0.1 * noise if path[-1].key == "scale" else 0.1 * noise)

    return jax.tree_util.tree_map_with_path(fill, shapes["params"])


def stack_layers(params: dict, num_layers: int) -> dict:
    """Per-layer layout ('layers_{i}') -> scan layout ('layers' with a leading layer axis)."""
    out = {k: v for k, v in params.items() if not k.startswith("layers_")}
    layers = [params[f"layers_{i}"] for i in range(num_layers)]
    out["layers"] = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *layers)
    return out


def right_padded(lengths: list[int], length: int, vocab: int, seed: int = 0):
    """Random ids [B, length] int32 (0 at padding) and mask [B, length] int32."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, vocab, size=(len(lengths), length)).astype(np.int32)
    mask = (np.arange(length)[None, :] < np.asarray(lengths)[:, None]).astype(np.int32)
    return jnp.asarray(ids * mask), jnp.asarray(mask)


def run(model: nn.Module, params: dict, *args, **static_kwargs):
    """model.apply({'params': params}, *args, **static_kwargs) under jit (one compile beats eager
    op-by-op dispatch on CPU); keyword arguments are static (method, return_hidden, max_length)."""
    fn = jax.jit(lambda p, *a: model.apply({"params": p}, *a, **static_kwargs))
    return fn(params, *args)
