"""LoRA on chosen decoder projections through the model's low-rank hook.

Trainable factors per target: a [layers, 1, d_in, R] ~ N(0, 1/d_in) and b [layers, 1, R, d_out] = 0,
so training starts from the base model exactly; the LoRA scale alpha / R is the hook's coeff.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxlvlm.models.config import TextConfig
from jaxlvlm.models.lowrank import LowRankFactors

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def projection_dims(text: TextConfig, target: str) -> tuple[int, int]:
    """(d_in, d_out) of a decoder projection."""
    hd = text.resolved_head_dim
    c, ff = text.hidden_size, text.intermediate_size
    dims = {
        "q_proj": (c, text.num_heads * hd),
        "k_proj": (c, text.num_kv_heads * hd),
        "v_proj": (c, text.num_kv_heads * hd),
        "o_proj": (text.num_heads * hd, c),
        "gate_proj": (c, ff),
        "up_proj": (c, ff),
        "down_proj": (ff, c),
    }
    if target not in dims:
        raise ValueError(f"LoRA target {target!r} is unknown; choose from {list(LORA_TARGETS)}")
    return dims[target]


def init_lora(rng: jax.Array, text: TextConfig, targets: Sequence[str], rank: int) -> dict:
    """{target: {'a': [layers, 1, d_in, R], 'b': [layers, 1, R, d_out]}} in float32."""
    out = {}
    for i, target in enumerate(targets):
        d_in, d_out = projection_dims(text, target)
        a = jax.random.normal(jax.random.fold_in(rng, i), (text.num_layers, 1, d_in, rank))
        out[target] = {
            "a": (a / jnp.sqrt(d_in)).astype(jnp.float32),
            "b": jnp.zeros((text.num_layers, 1, rank, d_out), jnp.float32),
        }
    return out


def lora_to_lowrank(lora: dict, alpha: float, rank: int) -> dict | None:
    """The model's ``lowrank`` argument: {target: LowRankFactors(a, b, coeff=[alpha / R])}."""
    if not lora:
        return None
    coeff = jnp.full((1,), alpha / rank, jnp.float32)
    return {t: LowRankFactors(a=f["a"], b=f["b"], coeff=coeff) for t, f in lora.items()}


def lowrank_of(lora: dict, alpha: float) -> dict | None:
    """``lora_to_lowrank`` with the rank read from the factors (None for no LoRA)."""
    if not lora:
        return None
    rank = next(iter(lora.values()))["a"].shape[-1]
    return lora_to_lowrank(lora, alpha, rank)
