"""Per-sample LoRA gradients through a tiny LVLM: vmap(grad), the one-pass mixture form and a loop
agree; batch_features gives the same vectors and scores in both modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jaxlvlm.methods.adapt_inf import model_features as MF
from jaxlvlm.methods.adapt_inf.sample_grads import per_sample_grads, per_sample_grads_loop
from jaxlvlm.models import build_model
from jaxlvlm.models.config import LVLMConfig, RuntimeConfig, TextConfig, VisionConfig
from jaxlvlm.train.lora import init_lora

B, L = 3, 24


@pytest.fixture(scope="module")
def setup():
    cfg = LVLMConfig(
        vision=VisionConfig(
            image_size=16,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_layers=1,
            num_heads=2,
        ),
        text=TextConfig(
            vocab_size=128,
            hidden_size=32,
            intermediate_size=64,
            num_layers=2,
            num_heads=2,
            num_kv_heads=1,
        ),
        image_token_id=3,
    )
    model = build_model(cfg, runtime=RuntimeConfig())
    rng = np.random.default_rng(0)
    ids = rng.integers(10, 128, size=(B, L)).astype(np.int32)
    ids[:, 1 : 1 + cfg.image_tokens_per_image] = 3
    ids[2, 1 : 1 + cfg.image_tokens_per_image] = rng.integers(
        10, 128, size=cfg.image_tokens_per_image
    )
    attn = np.ones((B, L), np.int32)
    attn[1, -5:] = 0
    loss_mask = np.zeros((B, L), np.float32)
    loss_mask[:, 12:18] = 1.0
    batch = {
        "input_ids": jnp.asarray(ids),
        "attention_mask": jnp.asarray(attn),
        "targets": jnp.asarray(np.pad(ids[:, 1:], ((0, 0), (0, 1)))),
        "loss_mask": jnp.asarray(loss_mask),
        "pixel_values": jnp.asarray(rng.normal(size=(B, 1, 16, 16, 3)), jnp.float32),
        "num_images": jnp.asarray([1, 1, 0], jnp.int32),
    }
    params = jax.jit(model.init)(
        jax.random.PRNGKey(0),
        batch["input_ids"],
        batch["attention_mask"],
        pixel_values=batch["pixel_values"],
        num_images=batch["num_images"],
    )
    params = nn.meta.unbox(params)["params"]
    lora = init_lora(jax.random.PRNGKey(1), cfg.text, ["q_proj", "o_proj"], 4)
    lora = jax.tree_util.tree_map(lambda x: x + 0.05, lora)
    return cfg, model, params, lora, batch


def test_vmap_mixture_and_loop_per_sample_grads_agree(setup):
    cfg, model, params, lora, batch = setup
    layer = 1
    loss_fn = MF.sample_loss_fn(model, params, lora, layer, 8.0)
    part = MF.layer_slice(lora, layer)
    v = jax.jit(lambda b: per_sample_grads(loss_fn, part, b))(batch)
    mix = jax.jit(lambda b: MF.mixture_sample_grads(model, params, lora, b, layer, 8.0))(batch)
    loop = per_sample_grads_loop(loss_fn, part, batch)
    for a, b_, c in zip(
        jax.tree_util.tree_leaves(v),
        jax.tree_util.tree_leaves(mix),
        jax.tree_util.tree_leaves(loop),
        strict=True,
    ):
        assert a.shape == b_.shape == c.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(np.asarray(b_), np.asarray(c), rtol=1e-4, atol=1e-6)
    assert float(jnp.abs(v["q_proj"]["b"]).max()) > 0


def test_batch_features_modes_agree(setup):
    cfg, model, params, lora, batch = setup
    kw = dict(layer=-1 % 2, alpha=8.0, dim=32, image_token_id=3, block_k=16, block_p=64)
    key = jax.random.PRNGKey(4)
    u1, s1 = jax.jit(lambda b: MF.batch_features(model, params, lora, b, key, **kw))(batch)
    u2, s2 = jax.jit(
        lambda b: MF.batch_features(model, params, lora, b, key, grad_mode="mixture", **kw)
    )(batch)
    np.testing.assert_allclose(np.asarray(u1), np.asarray(u2), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(u1), axis=1), 1.0, rtol=1e-5)
    for name in s1:
        np.testing.assert_allclose(np.asarray(s1[name]), np.asarray(s2[name]), rtol=1e-4, atol=1e-6)
    # Sample 2 has no image tokens: its text-only pass is the same input, so IG = 1.
    np.testing.assert_allclose(float(s1["image_grounding"][2]), 1.0, rtol=1e-5)
    assert np.all(np.isfinite(np.asarray(s1["image_grounding"])))
