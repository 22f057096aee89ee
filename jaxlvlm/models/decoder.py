"""The decoder LLM (Llama family, Qwen2): embedding, a stack of layers (looped or nn.scan), final norm,
LM head; forward, prefill and single-step decode. ``CausalLM`` is the same module fed with token ids.

Parameter tree (scan off): embed_tokens/embedding [V, C], layers_{i}/{input_layernorm, self_attn/
{q,k,v,o}_proj, post_attention_layernorm, mlp/{gate,up,down}_proj}, norm/scale, lm_head/kernel [C, V]
(absent when embeddings are tied). Scan on: one 'layers' subtree whose leaves have a leading
[num_layers] axis (logical name 'layers').
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxlvlm.models.config import RuntimeConfig, TextConfig
from jaxlvlm.models.decoder_layer import DecoderLayer, remat_policy
from jaxlvlm.models.embedding import Embed
from jaxlvlm.models.kv_cache import KVCache, cache_from_prefill, decode_key_mask
from jaxlvlm.models.lowrank import LowRankFactors, split_layers, validate_lowrank
from jaxlvlm.models.norms import RMSNorm
from jaxlvlm.models.projection import Projection
from jaxlvlm.models.rope import rope_inv_freq, rope_sin_cos, rope_sin_cos_table

LowRank = Mapping[str, LowRankFactors] | None


def default_positions(attention_mask: jax.Array) -> jax.Array:
    """RoPE positions [B, L] of right-padded rows: cumulative count of real tokens - 1 (0 at padding
    before the first token)."""
    return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


class Decoder(nn.Module):
    """Decoder-only LM over input embeddings; the LVLM splices image features into ``embed(ids)``."""

    config: TextConfig
    runtime: RuntimeConfig = RuntimeConfig()

    def setup(self):
        cfg, rt = self.config, self.runtime
        dt, pdt = jnp.dtype(rt.compute_dtype), jnp.dtype(rt.param_dtype)
        self.embed_tokens = Embed(cfg.vocab_size, cfg.hidden_size, dt, pdt)
        layer_cls = DecoderLayer
        if rt.remat_text != "none":
            # Argument 9 (counting self) is the static layer mode.
            layer_cls = nn.remat(
                layer_cls,
                policy=remat_policy(rt.remat_text),
                prevent_cse=not rt.scan_layers,
                static_argnums=(9,),
            )
        if rt.scan_layers:
            bc = nn.broadcast
            self.layers = nn.scan(
                layer_cls,
                variable_axes={"params": 0, "intermediates": 0},
                split_rngs={"params": True},
                # sin, cos, key_mask, lowrank_ab, lowrank_coeff, cache_kv, cache_index, mode
                in_axes=(bc, bc, bc, 0, bc, 0, bc, bc),
                length=cfg.num_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )(cfg, rt)
        else:
            self.layers = [layer_cls(cfg, rt) for _ in range(cfg.num_layers)]
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dt, pdt)
        if not cfg.tie_word_embeddings:
            self.lm_head = Projection(
                (cfg.hidden_size,),
                (cfg.vocab_size,),
                ("embed",),
                ("vocab",),
                False,
                dt,
                pdt,
                float32_output=True,
            )

    # -- pieces ------------------------------------------------------------------------------------

    def embed(self, input_ids: jax.Array) -> jax.Array:
        """Token embeddings: input_ids [B, L] int32 -> [B, L, C] in the compute dtype."""
        return self.embed_tokens(input_ids)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """LM head on final-normed hidden states [B, L, C] -> float32 logits [B, L, V]."""
        if self.config.tie_word_embeddings:
            return self.embed_tokens.attend(hidden)
        return self.lm_head(hidden)

    def _rope(self, positions: jax.Array, num_positions: int | None = None):
        """(sin, cos) [B, L, head_dim // 2] at positions [B, L]; num_positions: a bound the
        positions are known to stay under (then the tables are constants, rope_sin_cos_table)."""
        cfg = self.config
        inv_freq = rope_inv_freq(cfg.resolved_head_dim, cfg.rope_theta, cfg.rope_scaling_dict)
        if num_positions is not None:
            return rope_sin_cos_table(positions, inv_freq, num_positions)
        return rope_sin_cos(positions, inv_freq)

    def _layers(self, x, sin, cos, key_mask, lowrank, cache_kv, cache_index, mode):
        """Runs every layer; returns (x, kv) with kv = (k, v) as tuples of per-layer arrays (None in
        'train' mode). cache_kv (decode) is the KVCache's (k, v) tuples."""
        validate_lowrank(self.config, lowrank, x.shape[0])
        per_layer, coeffs = split_layers(lowrank)
        if self.runtime.scan_layers:
            # nn.scan slices a stacked [num_layers, ...] axis: the per-layer cache buffers are stacked
            # for it and split again after (two extra cache copies per step, scan mode only).
            if cache_kv is not None:
                cache_kv = tuple(jnp.stack(t) for t in cache_kv)
            x, kv = self.layers(
                x, sin, cos, key_mask, per_layer, coeffs, cache_kv, cache_index, mode
            )
            if kv is None:
                return x, None
            n = self.config.num_layers
            return x, tuple(tuple(t[i] for i in range(n)) for t in kv)
        kvs = []
        for i, layer in enumerate(self.layers):
            take_i = lambda t, i=i: t[i]
            x, kv = layer(
                x,
                sin,
                cos,
                key_mask,
                jax.tree_util.tree_map(take_i, per_layer),
                coeffs,
                None if cache_kv is None else (cache_kv[0][i], cache_kv[1][i]),
                cache_index,
                mode,
            )
            kvs.append(kv)
        if mode == "train":
            return x, None
        return x, (tuple(k for k, _ in kvs), tuple(v for _, v in kvs))

    def _ensure_embedding(self):
        # The embed-level entry points never touch the table when embeddings are untied; create it at
        # init so the parameter tree is always complete.
        if self.is_initializing():
            self.embed_tokens(jnp.zeros((1, 1), jnp.int32))

    # -- entry points over embeddings ---------------------------------------------------------------

    def __call__(
        self,
        inputs_embeds: jax.Array,
        attention_mask: jax.Array | None = None,
        positions: jax.Array | None = None,
        lowrank: LowRank = None,
        return_hidden: bool = False,
        compute_logits: bool = True,
    ):
        """Full forward over embeddings.

        inputs_embeds [B, L, C]; attention_mask [B, L] (1 = token, 0 = right padding; None = all ones);
        positions [B, L] int (default: cumulative count of the mask - 1); lowrank {target: LowRankFactors}.
        Returns float32 logits [B, L, V], or (logits, hidden [B, L, C] after the final norm) with
        return_hidden. compute_logits=False returns only hidden [B, L, C] (after the final norm) and
        skips the LM head: a chunked loss applies ``logits`` to slices of it, so the [B, L, V] logits
        never exist at once.
        """
        self._ensure_embedding()
        b, length, _ = inputs_embeds.shape
        if attention_mask is None:
            attention_mask = jnp.ones((b, length), jnp.int32)
        if positions is None:
            # Default positions stay in [0, length): the constant tables serve them.
            sin, cos = self._rope(default_positions(attention_mask), length)
        else:
            sin, cos = self._rope(positions)
        x = inputs_embeds.astype(jnp.dtype(self.runtime.compute_dtype))
        x, _ = self._layers(x, sin, cos, attention_mask.astype(bool), lowrank, None, None, "train")
        hidden = self.norm(x)
        if not compute_logits:
            return hidden
        logits = self.logits(hidden)
        return (logits, hidden) if return_hidden else logits

    def prefill_embeds(
        self,
        inputs_embeds: jax.Array,
        attention_mask: jax.Array,
        max_length: int,
        lowrank: LowRank = None,
        logits_at: jax.Array | None = None,
    ) -> tuple[jax.Array, KVCache]:
        """Runs right-padded prompts [B, L, C] (mask [B, L]) and returns (logits [B, L, V] float32,
        KVCache with room for ``max_length`` tokens and length = tokens per row).

        logits_at [B] int (e.g. each row's last real position): the LM head runs only there and the
        logits are [B, V]; generation needs no other position, and the full [B, L, V] head is the
        largest single matmul of a prefill at a big vocabulary."""
        self._ensure_embedding()
        if inputs_embeds.shape[1] > max_length:
            raise ValueError(
                f"prompt length {inputs_embeds.shape[1]} exceeds max_length {max_length}; "
                "max_length must cover the prompt and the tokens to generate"
            )
        mask = attention_mask.astype(bool)
        sin, cos = self._rope(default_positions(mask), mask.shape[1])
        x = inputs_embeds.astype(jnp.dtype(self.runtime.compute_dtype))
        x, (k, v) = self._layers(x, sin, cos, mask, lowrank, None, None, "prefill")
        cache = cache_from_prefill(k, v, jnp.sum(mask.astype(jnp.int32), axis=-1), max_length)
        if logits_at is not None:
            # The final norm is per position, so gathering before it changes nothing.
            x = x[jnp.arange(x.shape[0]), logits_at.astype(jnp.int32)][:, None]
            return self.logits(self.norm(x))[:, 0], cache
        return self.logits(self.norm(x)), cache

    def decode_embeds(
        self, inputs_embeds: jax.Array, cache: KVCache, lowrank: LowRank = None
    ) -> tuple[jax.Array, KVCache]:
        """One generation step: the next input embedding per row [B, C] goes to slot cache.length[b]
        with position cache.length[b]. Returns (logits [B, V] float32, the cache one token longer)."""
        x = inputs_embeds.astype(jnp.dtype(self.runtime.compute_dtype))[:, None, :]
        sin, cos = self._rope(cache.length[:, None])
        key_mask = decode_key_mask(cache.length, cache.max_length)
        x, (k, v) = self._layers(
            x, sin, cos, key_mask, lowrank, (cache.k, cache.v), cache.length, "decode"
        )
        logits = self.logits(self.norm(x))[:, 0]
        return logits, KVCache(k=k, v=v, length=cache.length + 1)


def _reject_images(pixel_values, num_images) -> None:
    if pixel_values is not None or num_images is not None:
        raise ValueError(
            "CausalLM is a text-only model and got pixel_values/num_images; build the model from an "
            "LVLMConfig to feed images"
        )


class CausalLM(Decoder):
    """The decoder fed with token ids (same parameter tree as ``Decoder``)."""

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        pixel_values: jax.Array | None = None,
        num_images: jax.Array | None = None,
        lowrank: LowRank = None,
        return_hidden: bool = False,
        compute_logits: bool = True,
    ):
        """input_ids [B, L] int32, attention_mask [B, L] -> float32 logits [B, L, V]
        (or (logits, hidden [B, L, C]) with return_hidden; hidden only with compute_logits=False)."""
        _reject_images(pixel_values, num_images)
        return super().__call__(
            self.embed(input_ids),
            attention_mask,
            lowrank=lowrank,
            return_hidden=return_hidden,
            compute_logits=compute_logits,
        )

    def prefill(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        pixel_values: jax.Array | None = None,
        num_images: jax.Array | None = None,
        max_length: int = 0,
        lowrank: LowRank = None,
        logits_at: jax.Array | None = None,
    ) -> tuple[jax.Array, KVCache]:
        """Right-padded prompts input_ids [B, L] -> (logits [B, L, V], KVCache of ``max_length``);
        logits [B, V] at positions logits_at [B] when given."""
        _reject_images(pixel_values, num_images)
        if max_length <= 0:
            raise ValueError("prefill needs max_length > 0 (prompt + tokens to generate)")
        return self.prefill_embeds(
            self.embed(input_ids), attention_mask, max_length, lowrank, logits_at
        )

    def decode(
        self, token_ids: jax.Array, cache: KVCache, lowrank: LowRank = None
    ) -> tuple[jax.Array, KVCache]:
        """Next token per row token_ids [B] int32 -> (logits [B, V], updated cache)."""
        return self.decode_embeds(self.embed(token_ids[:, None])[:, 0], cache, lowrank)
