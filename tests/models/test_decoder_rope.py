"""RoPE: inverse frequencies (default, linear, llama3) and the rotation equal transformers'."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxlvlm.models.rope import apply_rope, rope_inv_freq, rope_sin_cos

LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}


@pytest.mark.parametrize(
    "scaling",
    [None, {"rope_type": "linear", "factor": 4.0}, LLAMA3],
    ids=["default", "linear", "llama3"],
)
def test_inverse_frequencies_match_transformers(scaling):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    head_dim, theta = 32, 500000.0
    rope_parameters = {"rope_type": "default", "rope_theta": theta, **(scaling or {})}
    config = LlamaConfig(
        hidden_size=head_dim * 2, num_attention_heads=2, rope_parameters=rope_parameters
    )
    if scaling is None:
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        ref, _ = LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    else:
        ref, _ = ROPE_INIT_FUNCTIONS[scaling["rope_type"]](config)
    ours = rope_inv_freq(head_dim, theta, scaling)
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-6, atol=0)
    if scaling is LLAMA3:
        # All three bands occur: untouched, divided by the factor, and smoothly interpolated.
        plain = rope_inv_freq(head_dim, theta)
        ratio = plain / ours
        assert np.isclose(ratio, 1.0).any() and np.isclose(ratio, 8.0).any()
        assert ((ratio > 1.01) & (ratio < 7.99)).any()


def test_rotation_matches_transformers_at_far_positions():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    rng = np.random.RandomState(0)
    b, length, heads, dim = 2, 7, 3, 16
    q = rng.normal(size=(b, length, heads, dim)).astype(np.float32)
    positions = np.array([[0, 1, 2, 3, 500, 1000, 4000], [5, 6, 7, 8, 9, 10, 11]])
    inv = rope_inv_freq(dim, 10000.0)
    sin, cos = rope_sin_cos(jnp.asarray(positions), inv)
    ours = apply_rope(jnp.asarray(q), sin, cos)
    freqs = torch.from_numpy(positions).float()[..., None] * torch.from_numpy(inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    qt = torch.from_numpy(q).transpose(1, 2)  # HF layout [B, heads, L, D]
    ref, _ = apply_rotary_pos_emb(qt, qt, emb.cos(), emb.sin())
    np.testing.assert_allclose(np.asarray(ours), ref.transpose(1, 2).numpy(), rtol=0, atol=1e-5)


def test_unsupported_rope_type_is_named():
    with pytest.raises(ValueError, match="yarn.*supported"):
        rope_inv_freq(16, 10000.0, {"rope_type": "yarn", "factor": 2.0})


@pytest.mark.parametrize("scaling", [None, LLAMA3], ids=["default", "llama3"])
def test_constant_tables_give_the_computed_rotation(scaling):
    """rope_sin_cos_table (float64 sines of the same float32 angles, rounded) against rope_sin_cos
    (float32 sines in the program): within two float32 ulps of 1, at every table row."""
    from jaxlvlm.models.rope import rope_sin_cos_table

    inv = rope_inv_freq(64, 500000.0, scaling)
    positions = jnp.asarray(np.array([[0, 1, 2, 255, 17, 0], [3, 3, 200, 100, 50, 254]]))
    got = rope_sin_cos_table(positions, inv, 256)
    want = rope_sin_cos(positions, inv)
    for a, b in zip(got, want, strict=True):
        assert a.shape == (2, 6, 32) and a.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=2.4e-7)


def test_decoder_default_positions_match_explicit_positions():
    """The decoder's default positions go through the constant tables, explicit ones through the
    computed sines: the same logits either way, for right-padded rows."""
    from jaxlvlm.models.config import RuntimeConfig
    from jaxlvlm.models.decoder import CausalLM, Decoder, default_positions
    from tests.models.tiny_decoder import GQA, random_params, right_padded, run

    model = CausalLM(GQA, RuntimeConfig())
    params = random_params(GQA)
    ids, mask = right_padded([9, 5], 9, GQA.vocab_size, seed=2)
    embeds = run(model, params, ids, method="embed")
    by_table = run(model, params, embeds, mask, method=Decoder.__call__)
    by_angle = run(model, params, embeds, mask, default_positions(mask), method=Decoder.__call__)
    np.testing.assert_array_equal(np.asarray(run(model, params, ids, mask)), by_table)
    real = np.asarray(mask, bool)
    np.testing.assert_allclose(
        np.asarray(by_table)[real], np.asarray(by_angle)[real], rtol=0, atol=1e-5
    )
