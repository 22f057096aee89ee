"""Adapt-∞ scorers against numpy, dropping image tokens, Image Grounding on a constructed case."""

import jax.numpy as jnp
import numpy as np

from jaxlvlm.methods.adapt_inf.scorers import (
    SCORER_NAMES,
    drop_image_tokens,
    el2n,
    log_perplexity,
    predictive_entropy,
    score_batch,
)


def _np_softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def test_scorers_match_numpy():
    rng = np.random.default_rng(0)
    b, length, v = 3, 7, 13
    logits = rng.normal(size=(b, length, v)).astype(np.float32) * 2
    targets = rng.integers(0, v, size=(b, length))
    loss_mask = (rng.random((b, length)) > 0.5).astype(np.float32)
    loss_mask[:, 0] = 1.0
    attn = np.ones((b, length), np.int32)
    attn[1, 5:] = 0
    p = _np_softmax(logits.astype(np.float64))
    nll = -np.log(np.take_along_axis(p, targets[..., None], -1)[..., 0])
    ref_lp = (nll * loss_mask).sum(1) / loss_mask.sum(1)
    dist = np.linalg.norm(np.eye(v)[targets] - p, axis=-1)
    ref_el2n = (dist * loss_mask).sum(1) / loss_mask.sum(1)
    ent = -(p * np.log(p)).sum(-1)
    ref_ent = (ent * attn).sum(1) / attn.sum(1)
    args = (jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(loss_mask))
    np.testing.assert_allclose(np.asarray(log_perplexity(*args)), ref_lp, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(el2n(*args)), ref_el2n, rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(predictive_entropy(jnp.asarray(logits), jnp.asarray(attn))), ref_ent, rtol=1e-5
    )


IMG, Q, REP, PAD = 1, 2, 3, 0
V = 8


def _toy_logits(batch):
    """Position-free toy LVLM: each token's row of a table, plus, at the question token Q only,
    a +6 vote for the image's class (5 if the image is bright, else 4) when an image is present."""
    table = np.zeros((V, V), np.float32)
    table[REP, 7] = 6.0  # after REP the answer 7 is clear from the text alone
    ids = batch["input_ids"]
    logits = jnp.asarray(table)[ids]
    bright = jnp.mean(batch["pixel_values"], axis=(1, 2, 3, 4)) > 0
    img_class = jnp.where(bright, 5, 4)
    vote = 6.0 * jnp.eye(V)[img_class] * (batch["num_images"] > 0)[:, None]
    return logits + (ids == Q)[..., None] * vote[:, None, :]


def _batch():
    ids = np.array([[IMG, IMG, Q, 5, PAD, PAD], [IMG, IMG, REP, 7, PAD, PAD]], np.int32)
    attn = (np.arange(6)[None] < 4).astype(np.int32).repeat(2, 0)
    targets = np.pad(ids[:, 1:], ((0, 0), (0, 1)))
    loss_mask = np.zeros((2, 6), np.float32)
    loss_mask[:, 2] = 1.0  # the answer token (position 3) is predicted at position 2
    pix = np.ones((2, 1, 4, 4, 3), np.float32)
    return {
        "input_ids": jnp.asarray(ids),
        "attention_mask": jnp.asarray(attn),
        "targets": jnp.asarray(targets),
        "loss_mask": jnp.asarray(loss_mask),
        "pixel_values": jnp.asarray(pix),
        "num_images": jnp.asarray([1, 1], jnp.int32),
    }


def test_drop_image_tokens_repacks_rows():
    text = drop_image_tokens(_batch(), IMG)
    np.testing.assert_array_equal(
        np.asarray(text["input_ids"]), [[Q, 5, 0, 0, 0, 0], [REP, 7, 0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(np.asarray(text["attention_mask"]), [[1, 1, 0, 0, 0, 0]] * 2)
    np.testing.assert_array_equal(
        np.asarray(text["targets"]), [[5, 0, 0, 0, 0, 0], [7, 0, 0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(np.asarray(text["loss_mask"]), [[1, 0, 0, 0, 0, 0]] * 2)
    np.testing.assert_array_equal(np.asarray(text["num_images"]), [0, 0])
    assert float(jnp.abs(text["pixel_values"]).sum()) == 0.0


def test_image_grounding_above_one_only_when_the_answer_needs_the_image():
    batch = _batch()
    text = drop_image_tokens(batch, IMG)
    scores = score_batch(_toy_logits(batch), _toy_logits(text), batch, text, jnp.ones((2,)))
    assert set(scores) == set(SCORER_NAMES)
    ig = np.asarray(scores["image_grounding"])
    # Sample 0: without the image the answer is uniform over 8 tokens (PPL 8); with it, PPL ~1.02.
    assert ig[0] > 5.0
    assert abs(ig[1] - 1.0) < 1e-6
    expected_ppl_image = 1.0 / (np.exp(6.0) / (np.exp(6.0) + 7.0))
    np.testing.assert_allclose(ig[0], 8.0 / expected_ppl_image, rtol=1e-5)
