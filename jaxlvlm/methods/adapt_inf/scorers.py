"""Adapt-∞ importance scorers ("selector experts"), computed from one forward pass of θ_{t-1}.

All functions take a batch in the jaxlvlm batch contract (jaxlvlm/data/batch.py) and float32 logits
[B, L, V] where logits[:, k] predicts targets[:, k]; they return one score per sample [B].

- log perplexity: mean answer-token NLL (Adapt-∞'s code uses PPL in log space).
- EL2N: mean over answer tokens of ||onehot(y_k) - p_k||_2.
- entropy: mean predictive entropy over all real (non-padding) positions, prompt and image
  included, as the reference code does.
- Image Grounding: PPL without the image / PPL with it = exp(mean NLL_text - mean NLL_image). The
  pass "without the image" is, by default, the same sequence with an all-zero image tensor
  (``zero_image``), as the authors' ``obtain_ig_score`` in llava/grad_utils.py does; the paper's
  text only says "without the image", so the other reading, the image placeholder tokens dropped
  entirely (``drop_image_tokens``), is kept as an option.
- GraNd: ||per-sample gradient||_2 (from sample_grads.sample_vectors).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlvlm.train.losses import token_nll

SCORER_NAMES = ("log_perplexity", "el2n", "entropy", "image_grounding", "grand")


def _mask_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    mask = mask.astype(jnp.float32)
    return jnp.sum(values * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)


def log_perplexity(logits: jax.Array, targets: jax.Array, loss_mask: jax.Array) -> jax.Array:
    """Mean answer-token NLL per sample: [B]. exp() of it is the perplexity."""
    return _mask_mean(token_nll(logits, targets), loss_mask)


def el2n(logits: jax.Array, targets: jax.Array, loss_mask: jax.Array) -> jax.Array:
    """Mean over answer tokens of ||onehot(y) - softmax(logits)||_2: [B]."""
    p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    p_y = jnp.take_along_axis(p, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    # ||e_y - p||² = 1 - 2 p_y + Σ p², without building the one-hot [B, L, V].
    sq = 1.0 - 2.0 * p_y + jnp.sum(p * p, axis=-1)
    return _mask_mean(jnp.sqrt(jnp.maximum(sq, 0.0)), loss_mask)


def predictive_entropy(logits: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """Mean over real positions of -Σ_v p_v log p_v (nats): [B]."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    ent = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    return _mask_mean(ent, attention_mask)


def image_grounding(log_ppl_text: jax.Array, log_ppl_image: jax.Array) -> jax.Array:
    """PPL(text only) / PPL(with image) from the two log perplexities [B] -> [B].

    Above 1 when the image makes the answer more likely; 1 for text-only samples (same input).
    """
    return jnp.exp(log_ppl_text - log_ppl_image)


def zero_image(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The batch with an all-zero image tensor, every token kept (the authors' IG "no image" pass).

    pixel_values are the normalised model inputs, so zero is the per-channel mean image, exactly
    what ``torch.zeros_like(batch['images'])`` feeds LLaVA in obtain_ig_score. Same keys, shapes.
    """
    out = dict(batch)
    if "pixel_values" in batch:
        out["pixel_values"] = jnp.zeros_like(batch["pixel_values"])
    return out


def drop_image_tokens(batch: dict[str, jax.Array], image_token_id: int) -> dict[str, jax.Array]:
    """The text-only version of a batch: image placeholder tokens removed, rows re-packed left.

    Static shapes: the kept tokens of each row move left by index arithmetic (a scatter by the
    cumulative count of kept tokens); the freed tail becomes padding. Targets are rebuilt from the
    new ids, and each answer token keeps its loss-mask bit, so the answer tokens scored with and
    without the image are the same tokens. ``num_images`` becomes 0 and pixel_values zeros.
    Returns a new dict with the same keys and shapes.
    """
    ids = batch["input_ids"]
    attn = batch["attention_mask"].astype(jnp.int32)
    seq_len = ids.shape[1]
    # Loss bit attached to the token being predicted: token j is learned iff loss_mask[j-1] == 1.
    token_loss = jnp.pad(batch["loss_mask"][:, :-1], ((0, 0), (1, 0)))
    keep = (attn > 0) & (ids != image_token_id)
    dest = jnp.where(
        keep, jnp.cumsum(keep, axis=1) - 1, seq_len
    )  # seq_len = dropped (out of range)
    rows = jnp.arange(ids.shape[0])[:, None]

    def pack(x, fill):
        out = jnp.full_like(x, fill)
        return out.at[rows, dest].set(x, mode="drop")

    new_ids = pack(ids, 0)
    new_attn = pack(attn, 0)
    new_token_loss = pack(token_loss, 0)
    new_targets = jnp.pad(new_ids[:, 1:], ((0, 0), (0, 1)))
    new_loss = jnp.pad(new_token_loss[:, 1:], ((0, 0), (0, 1))).astype(batch["loss_mask"].dtype)
    out = dict(batch)
    out.update(
        input_ids=new_ids,
        attention_mask=new_attn.astype(batch["attention_mask"].dtype),
        targets=new_targets.astype(batch["targets"].dtype),
        loss_mask=new_loss,
    )
    if "pixel_values" in batch:
        out["pixel_values"] = jnp.zeros_like(batch["pixel_values"])
    if "num_images" in batch:
        out["num_images"] = jnp.zeros_like(batch["num_images"])
    return out


def score_batch(
    logits_image: jax.Array,
    logits_text: jax.Array,
    batch: dict[str, jax.Array],
    text_batch: dict[str, jax.Array],
    grand: jax.Array,
) -> dict[str, jax.Array]:
    """All scorers for one batch: name -> [B] float32 (keys = SCORER_NAMES).

    logits_image [B, L, V]: the model on ``batch``; logits_text: the model on ``text_batch`` =
    drop_image_tokens(batch); grand [B]: per-sample gradient norms.
    """
    lp_image = log_perplexity(logits_image, batch["targets"], batch["loss_mask"])
    lp_text = log_perplexity(logits_text, text_batch["targets"], text_batch["loss_mask"])
    return {
        "log_perplexity": lp_image,
        "el2n": el2n(logits_image, batch["targets"], batch["loss_mask"]),
        "entropy": predictive_entropy(logits_image, batch["attention_mask"]),
        "image_grounding": image_grounding(lp_text, lp_image),
        "grand": grand.astype(jnp.float32),
    }
