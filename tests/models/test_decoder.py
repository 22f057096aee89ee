"""Decoder properties: scan == loop, remat == no remat (values and gradients), tied read-out, padding
invariance, logical axis names on every parameter, the embeddings entry point."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from tiny_decoder import GQA, QWEN_TIED, random_params, right_padded, run, stack_layers

from jaxlvlm.models.config import RuntimeConfig
from jaxlvlm.models.decoder import CausalLM, Decoder

CONFIGS = {"llama_gqa": GQA, "qwen2_tied_mqa": QWEN_TIED}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_scan_equals_loop(name):
    cfg = CONFIGS[name]
    params = random_params(cfg)
    ids, mask = right_padded([24, 15], 24, cfg.vocab_size)
    loop = run(CausalLM(cfg, RuntimeConfig()), params, ids, mask)
    scan = run(
        CausalLM(cfg, RuntimeConfig(scan_layers=True)),
        stack_layers(params, cfg.num_layers),
        ids,
        mask,
    )
    np.testing.assert_allclose(np.asarray(scan), np.asarray(loop), rtol=0, atol=1e-5)


def test_remat_changes_neither_values_nor_gradients():
    cfg = GQA
    params = stack_layers(random_params(cfg), cfg.num_layers)
    ids, mask = right_padded([16, 11], 16, cfg.vocab_size)

    def loss(p, runtime):
        logits = CausalLM(cfg, runtime).apply({"params": p}, ids, mask)
        return jnp.sum(jax.nn.log_softmax(logits)[..., 0] * mask)

    value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    base, g_base = value_and_grad(params, RuntimeConfig(scan_layers=True))
    for policy in ("full", "dots"):
        val, g = value_and_grad(params, RuntimeConfig(scan_layers=True, remat_text=policy))
        np.testing.assert_allclose(float(val), float(base), rtol=1e-6)
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(
                np.asarray(a), np.asarray(b), rtol=0, atol=1e-6
            ),
            g,
            g_base,
        )


def test_tied_read_out_uses_the_embedding_table():
    cfg = QWEN_TIED
    params = random_params(cfg)
    assert "lm_head" not in params
    ids, mask = right_padded([8], 8, cfg.vocab_size)
    logits, hidden = run(CausalLM(cfg), params, ids, mask, return_hidden=True)
    assert hidden.shape == (1, 8, cfg.hidden_size) and logits.dtype == jnp.float32
    expected = np.asarray(hidden) @ np.asarray(params["embed_tokens"]["embedding"]).T
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=0, atol=1e-5)


def test_padding_does_not_change_real_positions():
    cfg = GQA
    params = random_params(cfg)
    ids, mask = right_padded([20, 9], 20, cfg.vocab_size)
    batched = run(CausalLM(cfg), params, ids, mask)
    alone = run(CausalLM(cfg), params, ids[1:, :9])
    np.testing.assert_allclose(np.asarray(batched[1, :9]), np.asarray(alone[0]), rtol=0, atol=1e-5)


def test_embeddings_entry_point_equals_token_entry_point():
    cfg = GQA
    params = random_params(cfg)
    ids, mask = right_padded([12, 5], 12, cfg.vocab_size)
    decoder = Decoder(cfg)
    embeds = run(decoder, params, ids, method="embed")
    from_embeds = run(decoder, params, embeds, mask)
    from_ids = run(CausalLM(cfg), params, ids, mask)
    np.testing.assert_array_equal(np.asarray(from_embeds), np.asarray(from_ids))


@pytest.mark.parametrize("scan", [False, True], ids=["loop", "scan"])
def test_every_parameter_has_logical_axis_names(scan):
    cfg = dataclasses.replace(GQA, attention_bias=True, mlp_bias=True)
    model = CausalLM(cfg, RuntimeConfig(scan_layers=scan))
    boxed = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
    leaves = jax.tree_util.tree_leaves_with_path(
        boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned)
    )
    assert len(leaves) > 10
    for path, leaf in leaves:
        assert isinstance(leaf, nn.Partitioned), jax.tree_util.keystr(path)
        assert len(leaf.names) == leaf.value.ndim, jax.tree_util.keystr(path)
        is_layer = "layers" in jax.tree_util.keystr(path)
        assert (leaf.names[0] == "layers") == (scan and is_layer), jax.tree_util.keystr(path)


def test_decoder_shards_over_a_mesh_like_the_unsharded_forward():
    from jaxlvlm.sharding import (
        DEFAULT_RULES,
        make_mesh,
        mesh_context,
        params_sharding,
        sharded_fraction,
    )

    cfg = dataclasses.replace(GQA, vocab_size=128)
    model = CausalLM(cfg, RuntimeConfig(scan_layers=True))
    ids, mask = right_padded([16, 9, 16, 3], 16, cfg.vocab_size)
    boxed = jax.eval_shape(model.init, jax.random.key(0), ids)
    mesh = make_mesh((2, 2, 2))
    shardings = params_sharding(boxed, mesh, DEFAULT_RULES)["params"]
    params = stack_layers(random_params(cfg), cfg.num_layers)
    sharded = jax.device_put(params, shardings)
    assert sharded_fraction(sharded) > 0.95
    with mesh_context(mesh, DEFAULT_RULES):
        out = jax.jit(lambda p: model.apply({"params": p}, ids, mask))(sharded)
    ref = run(model, params, ids, mask)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=0, atol=1e-5)


def test_text_only_model_refuses_images():
    params = random_params(GQA)
    ids, mask = right_padded([4], 4, GQA.vocab_size)
    with pytest.raises(ValueError, match="text-only"):
        CausalLM(GQA).apply({"params": params}, ids, mask, pixel_values=jnp.zeros((1, 1, 8, 8, 3)))


def test_bfloat16_compute_returns_float32_logits():
    cfg = GQA
    params = random_params(cfg)
    ids, mask = right_padded([8, 5], 8, cfg.vocab_size)
    logits = run(CausalLM(cfg, RuntimeConfig(compute_dtype="bfloat16")), params, ids, mask)
    ref = run(CausalLM(cfg), params, ids, mask)
    assert logits.dtype == jnp.float32
    # A smoke check of the bf16 path (8-bit mantissa), not a parity claim: finite and near fp32.
    assert np.isfinite(np.asarray(logits)).all()
    assert np.abs(np.asarray(logits) - np.asarray(ref)).max() < 0.05 * np.abs(np.asarray(ref)).max()
