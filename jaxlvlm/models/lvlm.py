"""LLaVA-style composition: vision tower -> connector -> decoder LLM.

Image features are spliced into the token embeddings at the placeholder positions by index arithmetic
with static shapes: the k-th placeholder of a row (counting from 0, left to right) takes feature k of
that row's images flattened in order (image 0's T features, then image 1's, ...). Image slots past
``num_images[b]`` are encoded (shapes are static) but never spliced; placeholders beyond
``num_images[b] * T`` keep their token embedding. This is transformers' LLaVA convention, so the same
input_ids feed both implementations.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxlvlm.models.config import LVLMConfig, RuntimeConfig
from jaxlvlm.models.connector import make_connector
from jaxlvlm.models.decoder import Decoder, LowRank
from jaxlvlm.models.kv_cache import KVCache
from jaxlvlm.models.pilot_connectors import PILOT_CONNECTORS  # noqa: F401 - registers them
from jaxlvlm.models.vit import VisionTower


def splice_image_features(
    embeds: jax.Array,
    input_ids: jax.Array,
    features: jax.Array,
    num_images: jax.Array,
    image_token_id: int,
) -> jax.Array:
    """Writes image features over the placeholder embeddings.

    embeds [B, L, C]; input_ids [B, L]; features [B, N, T, C]; num_images [B] (real images per row).
    Returns [B, L, C]: position (b, s) holding the k-th placeholder of row b gets features[b] flattened
    to [N * T, C] at index k when k < num_images[b] * T, else keeps embeds[b, s].
    """
    b, n, t, c = features.shape
    flat = features.reshape(b, n * t, c).astype(embeds.dtype)
    is_image = input_ids == image_token_id
    k = jnp.cumsum(is_image.astype(jnp.int32), axis=1) - 1
    use = is_image & (k < (num_images.astype(jnp.int32) * t)[:, None])
    gathered = flat[jnp.arange(b)[:, None], jnp.clip(k, 0, n * t - 1)]
    return jnp.where(use[..., None], gathered, embeds)


class LVLM(nn.Module):
    """Vision tower ('vision') -> connector ('connector') -> Decoder ('llm').

    __call__(input_ids [B, L] int32, attention_mask [B, L] | None, pixel_values [B, N, H, W, 3] or
    [B, H, W, 3] | None, num_images [B] | None (None = all N slots are real), lowrank, return_hidden,
    connector_inputs (extra keyword inputs for connectors that take them), deterministic,
    compute_logits) -> float32 logits [B, L, V] (or (logits, hidden [B, L, C]) with return_hidden;
    hidden [B, L, C] alone with compute_logits=False, for a chunked loss that calls ``logits``).
    """

    config: LVLMConfig
    runtime: RuntimeConfig = RuntimeConfig()

    def setup(self):
        cfg, rt = self.config, self.runtime
        self.vision = VisionTower(cfg.vision, rt)
        self.connector = make_connector(
            cfg.connector,
            cfg.vision.hidden_size,
            cfg.text.hidden_size,
            cfg.projector_bias,
            rt.compute_dtype,
            rt.param_dtype,
            **dict(cfg.connector_kwargs),
        )
        self.llm = Decoder(cfg.text, rt)

    def image_features(
        self,
        pixel_values: jax.Array,
        connector_inputs: dict[str, Any] | None = None,
        deterministic: bool = True,
    ) -> jax.Array:
        """pixel_values [B, N, H, W, 3] -> connector outputs [B, N, T, C] (T = image_tokens_per_image).

        The connector sees the B * N images as [B * N, T_v, d_v], row-major over (b, n).
        """
        cfg = self.config
        b, n = pixel_values.shape[:2]
        flat = pixel_values.reshape(b * n, *pixel_values.shape[2:])
        feats = self.vision(flat, feature_layer=cfg.vision_feature_layer)
        if cfg.vision_feature_select_strategy == "default":
            # transformers drops the first token under 'default' (the class token of CLIP).
            feats = feats[:, 1:]
        elif cfg.vision_feature_select_strategy != "full":
            raise ValueError(
                f"vision_feature_select_strategy '{cfg.vision_feature_select_strategy}' is unknown; "
                "use 'default' or 'full'"
            )
        out = self.connector(feats, deterministic=deterministic, **(connector_inputs or {}))
        return out.reshape(b, n, *out.shape[1:])

    def embed_inputs(
        self,
        input_ids: jax.Array,
        pixel_values: jax.Array | None = None,
        num_images: jax.Array | None = None,
        connector_inputs: dict[str, Any] | None = None,
        deterministic: bool = True,
    ) -> jax.Array:
        """Token embeddings [B, L, C] with image features spliced in at the placeholders."""
        embeds = self.llm.embed(input_ids)
        if pixel_values is None:
            if self.is_initializing():
                # Build the vision tower and connector even when init is called text-only.
                v = self.config.vision
                dummy = jnp.zeros((1, 1, v.image_size, v.image_size, v.num_channels), embeds.dtype)
                self.image_features(dummy, connector_inputs, deterministic)
            return nn.with_logical_constraint(embeds, ("batch", "length", None))
        if pixel_values.ndim == 4:
            pixel_values = pixel_values[:, None]
        if pixel_values.ndim != 5 or pixel_values.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"pixel_values has shape {pixel_values.shape}; expected [B, N, H, W, C] or [B, H, W, C] "
                f"with B = {input_ids.shape[0]} (the batch size of input_ids)"
            )
        if num_images is None:
            num_images = jnp.full((input_ids.shape[0],), pixel_values.shape[1], jnp.int32)
        feats = self.image_features(pixel_values, connector_inputs, deterministic)
        embeds = splice_image_features(
            embeds, input_ids, feats, num_images, self.config.image_token_id
        )
        return nn.with_logical_constraint(embeds, ("batch", "length", None))

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        pixel_values: jax.Array | None = None,
        num_images: jax.Array | None = None,
        lowrank: LowRank = None,
        return_hidden: bool = False,
        connector_inputs: dict[str, Any] | None = None,
        deterministic: bool = True,
        compute_logits: bool = True,
    ):
        embeds = self.embed_inputs(
            input_ids, pixel_values, num_images, connector_inputs, deterministic
        )
        return self.llm(
            embeds,
            attention_mask,
            lowrank=lowrank,
            return_hidden=return_hidden,
            compute_logits=compute_logits,
        )

    def logits(self, hidden: jax.Array) -> jax.Array:
        """The decoder's LM head on final-normed hidden states [B, L, C] -> float32 logits [B, L, V]."""
        return self.llm.logits(hidden)

    def prefill(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        pixel_values: jax.Array | None = None,
        num_images: jax.Array | None = None,
        max_length: int = 0,
        lowrank: LowRank = None,
        connector_inputs: dict[str, Any] | None = None,
        logits_at: jax.Array | None = None,
    ) -> tuple[jax.Array, KVCache]:
        """Right-padded prompts -> (logits [B, L, V] float32, KVCache with room for max_length);
        with logits_at [B] int the LM head runs only at those positions and logits are [B, V]."""
        if max_length <= 0:
            raise ValueError("prefill needs max_length > 0 (prompt + tokens to generate)")
        embeds = self.embed_inputs(input_ids, pixel_values, num_images, connector_inputs)
        return self.llm.prefill_embeds(embeds, attention_mask, max_length, lowrank, logits_at)

    def decode(
        self, token_ids: jax.Array, cache: KVCache, lowrank: LowRank = None
    ) -> tuple[jax.Array, KVCache]:
        """Next token per row token_ids [B] int32 -> (logits [B, V] float32, the cache one longer)."""
        return self.llm.decode_embeds(self.llm.embed(token_ids[:, None])[:, 0], cache, lowrank)
