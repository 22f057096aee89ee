"""A BERT encoder with mean pooling and L2 normalisation: Sentence-BERT (all-MiniLM-L6-v2) in Flax.

BERT is post-LayerNorm: embeddings (word + position + token type) -> LayerNorm, then per layer
x = LN(x + Attn(x)); x = LN(x + W2 gelu(W1 x)). The sentence embedding is the mean of the last hidden
states over non-padding tokens, divided by its L2 norm (sentence-transformers' Pooling + Normalize).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxlvlm.models.activations import get_activation
from jaxlvlm.models.attention import attend
from jaxlvlm.models.config import RuntimeConfig


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """BERT encoder hyper-parameters (defaults: all-MiniLM-L6-v2)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    intermediate_size: int = 1536
    num_layers: int = 6
    num_heads: int = 12
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def _dense(features: int, names: tuple[str | None, str | None], rt: RuntimeConfig, name: str):
    return nn.Dense(
        features,
        dtype=jnp.dtype(rt.compute_dtype),
        param_dtype=jnp.dtype(rt.param_dtype),
        kernel_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), names),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (names[1],)),
        name=name,
    )


def _layer_norm(cfg: BertConfig, rt: RuntimeConfig, name: str):
    # Two-pass variance as PyTorch computes it: the fast E[x^2]-E[x]^2 form loses digits at eps 1e-12.
    return nn.LayerNorm(
        epsilon=cfg.layer_norm_eps,
        use_fast_variance=False,
        dtype=jnp.dtype(rt.compute_dtype),
        param_dtype=jnp.dtype(rt.param_dtype),
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)),
        name=name,
    )


def _embed(num: int, cfg: BertConfig, rt: RuntimeConfig, names, name: str):
    return nn.Embed(
        num,
        cfg.hidden_size,
        dtype=jnp.dtype(rt.compute_dtype),
        param_dtype=jnp.dtype(rt.param_dtype),
        embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), names),
        name=name,
    )


class BertLayer(nn.Module):
    """One post-LN BERT layer: x [B, L, D], key_mask [B, L] bool -> [B, L, D]."""

    config: BertConfig
    runtime: RuntimeConfig = RuntimeConfig()

    @nn.compact
    def __call__(self, x: jax.Array, key_mask: jax.Array) -> jax.Array:
        cfg, rt = self.config, self.runtime
        b, length, d = x.shape
        heads = (b, length, cfg.num_heads, cfg.head_dim)
        q = _dense(d, ("embed", "heads"), rt, "query")(x).reshape(heads)
        k = _dense(d, ("embed", "heads"), rt, "key")(x).reshape(heads)
        v = _dense(d, ("embed", "heads"), rt, "value")(x).reshape(heads)
        att = attend(q, k, v, key_mask, causal=False, backend=rt.attention_backend)
        att = _dense(d, ("heads", "embed"), rt, "attention_output")(att.reshape(b, length, d))
        x = _layer_norm(cfg, rt, "attention_norm")(x + att)
        h = _dense(cfg.intermediate_size, ("embed", "mlp"), rt, "intermediate")(x)
        h = _dense(d, ("mlp", "embed"), rt, "output")(get_activation(cfg.hidden_act)(h))
        return _layer_norm(cfg, rt, "output_norm")(x + h)


class BertEncoder(nn.Module):
    """BERT without pooler: token ids -> last hidden states.

    ``__call__(input_ids [B, L] int32, attention_mask [B, L] (1 = token, 0 = padding),
    token_type_ids [B, L] | None) -> [B, L, D]`` in float32. L <= max_position_embeddings.
    """

    config: BertConfig
    runtime: RuntimeConfig = RuntimeConfig()

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        token_type_ids: jax.Array | None = None,
    ) -> jax.Array:
        cfg, rt = self.config, self.runtime
        length = input_ids.shape[1]
        if length > cfg.max_position_embeddings:
            raise ValueError(
                f"sequence length {length} exceeds max_position_embeddings "
                f"{cfg.max_position_embeddings}; truncate the inputs"
            )
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        x = _embed(cfg.vocab_size, cfg, rt, ("vocab", "embed"), "word_embeddings")(input_ids)
        positions = jnp.arange(length)[None, :]
        x = x + _embed(
            cfg.max_position_embeddings, cfg, rt, ("positions", "embed"), "position_embeddings"
        )(positions)
        x = x + _embed(cfg.type_vocab_size, cfg, rt, (None, "embed"), "token_type_embeddings")(
            token_type_ids
        )
        x = _layer_norm(cfg, rt, "embeddings_norm")(x)
        key_mask = attention_mask.astype(bool)
        for i in range(cfg.num_layers):
            x = BertLayer(cfg, rt, name=f"layer_{i}")(x, key_mask)
        return x.astype(jnp.float32)


def mean_pool(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """Mean of hidden [B, L, D] over positions where attention_mask [B, L] is 1 -> [B, D].

    An all-padding row divides by 1e-9 (as sentence-transformers clamps) and yields zeros.
    """
    mask = attention_mask.astype(hidden.dtype)[..., None]
    return jnp.sum(hidden * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1e-9)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """x [..., D] / max(||x||_2, eps) along the last axis (torch.nn.functional.normalize)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    return x / jnp.maximum(norm, eps)


def encode_sentences(
    config: BertConfig,
    params: Any,
    input_ids: jax.Array,
    attention_mask: jax.Array,
    runtime: RuntimeConfig | None = None,
) -> jax.Array:
    """Sentence embeddings: BERT -> mean pooling -> L2 normalisation.

    Args:
      config, runtime: static (hashable) settings; jit this with them as static arguments
        (runtime None = RuntimeConfig(): float32, XLA attention).
      params: the encoder's parameter tree (``jaxlvlm.convert.bert.load_bert``).
      input_ids: [B, L] int32; attention_mask: [B, L] (1 = token, 0 = padding).
    Returns:
      [B, D] float32 unit vectors (zeros for an all-padding row).
    """
    hidden = BertEncoder(config, runtime or RuntimeConfig()).apply(
        {"params": params}, input_ids, attention_mask
    )
    return l2_normalize(mean_pool(hidden, attention_mask))
