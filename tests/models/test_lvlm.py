"""LVLM composition: the static-shape splice against a plain loop, text-only init, prefill/decode against
the full forward, low-rank hooks and connector inputs passed through, bad pixel shapes named."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jaxlvlm.models import build_model
from jaxlvlm.models.config import LVLMConfig, TextConfig, VisionConfig
from jaxlvlm.models.connector import CONNECTORS, register_connector
from jaxlvlm.models.lowrank import LowRankFactors
from jaxlvlm.models.lvlm import splice_image_features

CONFIG = LVLMConfig(
    vision=VisionConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4),
    text=TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4),
    image_token_id=3,
)


def _splice_reference(embeds, ids, feats, num_images, image_token):
    out = embeds.copy()
    b, n, t, _ = feats.shape
    for r in range(b):
        flat = feats[r].reshape(n * t, -1)
        k = 0
        for s in range(ids.shape[1]):
            if ids[r, s] == image_token:
                if k < num_images[r] * t:
                    out[r, s] = flat[k]
                k += 1
    return out


def test_splice_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    b, length, n, t, c = 4, 30, 3, 4, 8
    ids = rng.integers(4, 50, size=(b, length))
    ids[0, [1, 2, 3, 4, 10, 11, 12, 13]] = 3  # two images
    ids[1, 20:24] = 3  # one image, but num_images says 0: placeholders keep their embedding
    ids[2, 0:12] = 3  # three images back to back
    ids[3, 5:9] = 3  # one image followed by a stray placeholder run beyond num_images * t
    ids[3, 15:17] = 3
    num_images = np.array([2, 0, 3, 1])
    embeds = rng.standard_normal((b, length, c)).astype(np.float32)
    feats = rng.standard_normal((b, n, t, c)).astype(np.float32)
    got = jax.jit(splice_image_features, static_argnums=4)(embeds, ids, feats, num_images, 3)
    want = _splice_reference(embeds, ids, feats, num_images, 3)
    np.testing.assert_array_equal(np.asarray(got), want)


@pytest.fixture(scope="module")
def model_and_params():
    model = build_model(CONFIG)
    # Text-only init still builds the vision tower and the connector.
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 4), jnp.int32)))[
        "params"
    ]
    assert set(params) == {"vision", "connector", "llm"}
    assert "linear_1" in params["connector"] and "layers_1" in params["vision"]
    return model, params


def _batch():
    rng = np.random.default_rng(1)
    t = CONFIG.image_tokens_per_image
    ids = rng.integers(4, 64, size=(2, 2 * t + 6)).astype(np.int32)
    ids[0, 1 : 1 + t] = 3
    mask = np.ones_like(ids)
    mask[1, -5:] = 0
    pixels = rng.standard_normal((2, 1, 32, 32, 3)).astype(np.float32)
    return ids, mask, pixels, np.array([1, 0], np.int32)


def test_images_change_only_what_follows_them(model_and_params):
    model, params = model_and_params
    ids, mask, pixels, num_images = _batch()
    fwd = jax.jit(lambda p, px: model.apply({"params": p}, ids, mask, px, num_images))
    a = np.asarray(fwd(params, pixels))
    b = np.asarray(fwd(params, pixels + 1.0))
    # Row 0's image starts at position 1: position 0 is unaffected, later ones change.
    np.testing.assert_array_equal(a[0, 0], b[0, 0])
    assert not np.allclose(a[0, 1:], b[0, 1:])
    # Row 1 has no image (num_images 0): its slot's pixels must not matter at all.
    np.testing.assert_array_equal(a[1], b[1])
    # [B, H, W, 3] is one image per row.
    c = np.asarray(
        jax.jit(lambda p: model.apply({"params": p}, ids, mask, pixels[:, 0], num_images))(params)
    )
    np.testing.assert_allclose(c, a, atol=1e-6, rtol=0)


def test_prefill_and_decode_match_full_forward(model_and_params):
    model, params = model_and_params
    ids, mask, pixels, num_images = _batch()
    full = np.asarray(jax.jit(model.apply)({"params": params}, ids, mask, pixels, num_images))
    lengths = mask.sum(1)
    # Prefill the prompts without their last real token, then decode that token.
    short = mask.copy()
    short[np.arange(2), lengths - 1] = 0
    logits, cache = model.apply(
        {"params": params},
        ids,
        short,
        pixels,
        num_images,
        max_length=ids.shape[1] + 2,
        method="prefill",
    )
    real = short.astype(bool)
    np.testing.assert_allclose(np.asarray(logits)[real], full[real], atol=1e-5, rtol=0)
    step, cache = model.apply(
        {"params": params}, jnp.asarray(ids[np.arange(2), lengths - 1]), cache, method="decode"
    )
    np.testing.assert_allclose(np.asarray(step), full[np.arange(2), lengths - 1], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(np.asarray(cache.length), lengths)


def test_lowrank_reaches_the_decoder(model_and_params):
    model, params = model_and_params
    ids, mask, pixels, num_images = _batch()
    rng = np.random.default_rng(2)
    layers, c = CONFIG.text.num_layers, CONFIG.text.hidden_size
    factors = LowRankFactors(
        a=jnp.asarray(rng.standard_normal((layers, 1, c, 2)), jnp.float32),
        b=jnp.asarray(rng.standard_normal((layers, 1, 2, c)), jnp.float32),
        coeff=jnp.ones((1,), jnp.float32),
    )
    lowrank = {"o_proj": factors}
    got = model.apply({"params": params}, ids, mask, pixels, num_images, lowrank=lowrank)
    base = model.apply({"params": params}, ids, mask, pixels, num_images)
    assert not np.allclose(got, base)
    embeds = model.apply({"params": params}, ids, pixels, num_images, method="embed_inputs")
    # The same embeddings through the decoder alone, with the same hooks.
    decoder_out = model.apply(
        {"params": params},
        embeds,
        mask,
        lowrank=lowrank,
        method=lambda m, e, a, lowrank: m.llm(e, a, lowrank=lowrank),
    )
    np.testing.assert_allclose(np.asarray(got), np.asarray(decoder_out), atol=1e-6, rtol=0)


def test_connector_inputs_are_passed_through():
    @register_connector("test_task_shift")
    class TaskShift(nn.Module):
        in_dim: int
        out_dim: int
        bias: bool = True
        dtype: object = jnp.float32
        param_dtype: object = jnp.float32

        @nn.compact
        def __call__(self, features, deterministic=True, task_ids=None):
            out = nn.Dense(self.out_dim)(features)
            self.sow("intermediates", "task_ids", task_ids)
            return out + task_ids[:, None, None].astype(out.dtype)

    try:
        cfg = dataclasses.replace(CONFIG, connector="test_task_shift")
        model = build_model(cfg)
        ids, mask, pixels, num_images = _batch()
        extra = {"task_ids": jnp.array([1, 2])}
        variables = model.init(
            jax.random.key(0), ids, mask, pixels, num_images, connector_inputs=extra
        )
        _, state = model.apply(
            variables,
            ids,
            mask,
            pixels,
            num_images,
            connector_inputs=extra,
            mutable=["intermediates"],
        )
        sown = state["intermediates"]["connector"]["task_ids"][0]
        np.testing.assert_array_equal(np.asarray(sown), [1, 2])
    finally:
        CONNECTORS.pop("test_task_shift")


def test_bad_pixel_shape_is_named(model_and_params):
    model, params = model_and_params
    ids, mask, pixels, _ = _batch()
    with pytest.raises(ValueError, match=r"pixel_values has shape \(3, 1, 32, 32, 3\)"):
        model.apply({"params": params}, ids, mask, np.concatenate([pixels, pixels[:1]]))
