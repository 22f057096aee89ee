"""Adapt-∞ sample vectors and scores of a batch under an LVLM with LoRA (the model glue, pure).

The gradient features are those of the LoRA factors of ONE decoder layer (``layer``): the layer's
slice of every LoRA target is the differentiated argument, the rest of the LoRA and the model are
constants. Everything here jits; the runner streams pool batches through ``batch_features``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxlvlm.methods.adapt_inf.projection import normalize_rows, rademacher_project
from jaxlvlm.methods.adapt_inf.sample_grads import answer_nll, flatten_per_sample, sample_vectors
from jaxlvlm.methods.adapt_inf.scorers import drop_image_tokens, score_batch, zero_image
from jaxlvlm.models.apply import apply_batch
from jaxlvlm.models.lowrank import LowRankFactors
from jaxlvlm.train.lora import lowrank_of

MODEL_KEYS = ("input_ids", "attention_mask", "targets", "loss_mask", "pixel_values", "num_images")


def layer_slice(lora: dict, layer: int) -> dict:
    """{target: {'a': [1, d_in, R], 'b': [1, R, d_out]}}: one decoder layer's LoRA factors."""
    return {t: {"a": f["a"][layer], "b": f["b"][layer]} for t, f in lora.items()}


def with_layer(lora: dict, layer: int, part: dict) -> dict:
    """``lora`` with layer ``layer`` replaced by ``part`` (as returned by layer_slice)."""
    return {
        t: {"a": f["a"].at[layer].set(part[t]["a"]), "b": f["b"].at[layer].set(part[t]["b"])}
        for t, f in lora.items()
    }


def model_logits(model, params: Any, lora: dict, batch: dict, alpha: float) -> jax.Array:
    """logits [B, L, V] of the LVLM with LoRA on ``batch`` (batch contract keys)."""
    return apply_batch(model, params, batch, lowrank=lowrank_of(lora, alpha))


def sample_loss_fn(model, params: Any, lora: dict, layer: int, alpha: float):
    """loss_fn(layer_part, sample) -> answer-token mean NLL of one sample (no batch dim)."""

    def loss_fn(part, sample):
        full = with_layer(lora, layer, part)
        one = jax.tree_util.tree_map(lambda x: x[None], sample)
        logits = model_logits(model, params, full, one, alpha)
        return answer_nll(logits[0], sample["targets"], sample["loss_mask"])

    return loss_fn


def mixture_sample_grads(
    model, params: Any, lora: dict, batch: dict, layer: int, alpha: float
) -> dict:
    """Per-sample gradients of one layer's LoRA in ONE batched forward/backward (no vmap).

    Every sample gets its own copy of the LoRA factors (the hook's N = B entries with one-hot
    coefficients: row b uses copy b only), so d(Σ_b loss_b)/d(copy_b) = d loss_b / d θ. The extra
    cost is a rank-(B·R) instead of rank-R LoRA in every layer. Returns leaves [B, 1, ...] shaped
    like ``per_sample_grads(sample_loss_fn(...), layer_slice(lora, layer), batch)``.
    """

    size = batch["input_ids"].shape[0]
    rank = next(iter(lora.values()))["a"].shape[-1]
    coeff = jnp.eye(size, dtype=jnp.float32) * (alpha / rank)
    copies = jax.tree_util.tree_map(lambda x: jnp.repeat(x, size, axis=0), layer_slice(lora, layer))

    def total_loss(copies):
        lowrank = {}
        for t, f in lora.items():
            a = jnp.repeat(f["a"], size, axis=1).at[layer].set(copies[t]["a"])
            b = jnp.repeat(f["b"], size, axis=1).at[layer].set(copies[t]["b"])
            lowrank[t] = LowRankFactors(a=a, b=b, coeff=coeff)
        kwargs = {}
        if "pixel_values" in batch:
            kwargs = {"pixel_values": batch["pixel_values"], "num_images": batch["num_images"]}
        logits = model.apply(
            {"params": params},
            batch["input_ids"],
            batch["attention_mask"],
            lowrank=lowrank,
            **kwargs,
        )
        per_sample = jax.vmap(answer_nll)(logits, batch["targets"], batch["loss_mask"])
        return jnp.sum(per_sample)

    grads = jax.grad(total_loss)(copies)  # leaves [B, d_in, R] / [B, R, d_out]
    return jax.tree_util.tree_map(lambda g: g[:, None], grads)


def batch_features(
    model,
    params: Any,
    lora: dict,
    batch: dict,
    key: jax.Array,
    *,
    layer: int,
    alpha: float,
    dim: int,
    image_token_id: int,
    block_k: int = 128,
    block_p: int = 16384,
    grad_mode: str = "vmap",
    image_grounding: str = "zero_image",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Sample vectors u [B, dim] (unit rows) and every scorer [B] for one batch.

    ``key`` is the projection key: keep ONE for the whole stream (AdaptInfSettings.
    projection_seed), or sample vectors of different steps live in different random spaces.
    Two extra forwards beyond the per-sample gradients: the batch with its images, and the same
    batch without them for Image Grounding: image_grounding 'zero_image' (default, the authors'
    code: an all-zero image tensor) or 'drop_image_tokens' (placeholders removed). grad_mode
    'vmap': vmap(grad) over single-sample forwards; 'mixture': one batched pass with per-sample
    LoRA copies (same values).
    """
    batch = {k: batch[k] for k in MODEL_KEYS if k in batch}
    if grad_mode == "vmap":
        loss_fn = sample_loss_fn(model, params, lora, layer, alpha)
        u, grand = sample_vectors(
            loss_fn, layer_slice(lora, layer), batch, key, dim, block_k, block_p
        )
    elif grad_mode == "mixture":
        g = flatten_per_sample(mixture_sample_grads(model, params, lora, batch, layer, alpha))
        grand = jnp.linalg.norm(g, axis=-1)
        u = normalize_rows(rademacher_project(g, key, dim=dim, block_k=block_k, block_p=block_p))
    else:
        raise ValueError(f"grad_mode={grad_mode!r}: choose 'vmap' or 'mixture'")
    if image_grounding == "zero_image":
        text = zero_image(batch)
    elif image_grounding == "drop_image_tokens":
        text = drop_image_tokens(batch, image_token_id)
    else:
        raise ValueError(
            f"image_grounding={image_grounding!r}: choose 'zero_image' or 'drop_image_tokens'"
        )
    logits_img = model_logits(model, params, lora, batch, alpha)
    logits_txt = model_logits(model, params, lora, text, alpha)
    scores = score_batch(logits_img, logits_txt, batch, text, grand)
    return u, {k: v.astype(jnp.float32) for k, v in scores.items()}
