"""Batched greedy generation with a KV cache, jitted once per (model, shapes, max_new_tokens).

Prompts are right-padded rows of different lengths; each row continues right after its own last prompt
token (the cache keeps a per-row length) and stops at ``eos_id``, after which it emits ``pad_id``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens", "eos_id", "pad_id"))
def _generate(
    model: nn.Module,
    params: Any,
    input_ids: jax.Array,
    attention_mask: jax.Array,
    extra: dict[str, jax.Array],
    lowrank: Any,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
) -> jax.Array:
    b, length = input_ids.shape
    variables = {"params": params}
    last = jnp.maximum(jnp.sum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)
    # The LM head runs only at each row's last prompt token: the other L - 1 positions' logits
    # would be thrown away, and at a large vocabulary they are the prefill's biggest matmul.
    logits, cache = model.apply(
        variables,
        input_ids,
        attention_mask,
        max_length=length + max_new_tokens,
        lowrank=lowrank,
        logits_at=last,
        method="prefill",
        **extra,
    )
    first = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    done = first == eos_id

    def step(carry, _):
        token, cache, done = carry
        logits, cache = model.apply(variables, token, cache, lowrank=lowrank, method="decode")
        nxt = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        nxt = jnp.where(done, pad_id, nxt)
        return (nxt, cache, done | (nxt == eos_id)), nxt

    if max_new_tokens == 1:
        return first[:, None]
    _, rest = jax.lax.scan(step, (first, cache, done), None, length=max_new_tokens - 1)
    return jnp.concatenate([first[:, None], rest.T], axis=1)


def greedy_generate(
    model: nn.Module,
    params: Any,
    batch: Mapping[str, Any],
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    lowrank: Mapping[str, Any] | None = None,
) -> jax.Array:
    """Greedy decoding for an LVLM or CausalLM.

    batch: input_ids [B, L] int32 and attention_mask [B, L] (right-padded prompts); for an LVLM also
    pixel_values [B, N, H, W, 3] and num_images [B] (optional). Returns tokens [B, max_new_tokens]
    int32: row b's greedy continuation up to and including its first eos_id, then pad_id. One
    compilation per model, batch shapes and max_new_tokens.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    extra = {k: batch[k] for k in ("pixel_values", "num_images") if batch.get(k) is not None}
    return _generate(
        model,
        params,
        jnp.asarray(batch["input_ids"], jnp.int32),
        jnp.asarray(batch["attention_mask"], jnp.int32),
        extra,
        lowrank,
        max_new_tokens,
        int(eos_id),
        int(pad_id),
    )
