"""Parity of the decoder against transformers' PyTorch Llama/Qwen2 (fp32, highest matmul precision).

Tiny random models are saved with save_pretrained and loaded through ``load_hf_causal_lm``. Modules
(attention, MLP, decoder layer) must agree within 1e-5, full logits within 1e-4 max abs on a 112-token
batch with a right-padded row, so RoPE at long positions and the padding mask are both exercised.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from llama_hf_tiny import (
    CASES,
    HIDDEN,
    default_positions_np,
    make_hf_model,
    padded_batch,
    torch_additive_mask,
)

from jaxlvlm.convert.llama import load_hf_causal_lm
from jaxlvlm.models.attention import SelfAttention
from jaxlvlm.models.config import RuntimeConfig
from jaxlvlm.models.decoder import CausalLM
from jaxlvlm.models.decoder_layer import DecoderLayer
from jaxlvlm.models.mlp import GatedMLP
from jaxlvlm.models.rope import rope_inv_freq, rope_sin_cos

torch.set_float32_matmul_precision("highest")

MODULE_TOL = 1e-5
LOGITS_TOL = 1e-4
SEQ = 112
LENGTHS = [112, 77]


@pytest.fixture(scope="module", params=sorted(CASES))
def loaded(request, tmp_path_factory):
    """(case name, HF torch model, our TextConfig, our per-layer params) for each tiny case."""
    model = make_hf_model(request.param)
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(str(path))
    cfg, params = load_hf_causal_lm(str(path))
    return request.param, model, cfg, params


def _hidden_inputs(seed: int = 1):
    rng = np.random.RandomState(seed)
    x = rng.normal(size=(len(LENGTHS), SEQ, HIDDEN)).astype(np.float32)
    _, mask = padded_batch(LENGTHS, SEQ)
    return x, mask


def _rope_tables(cfg, mask):
    positions = default_positions_np(mask)
    inv = rope_inv_freq(cfg.resolved_head_dim, cfg.rope_theta, cfg.rope_scaling_dict)
    return positions, rope_sin_cos(jnp.asarray(positions), inv)


def _torch_rope(model, x, positions):
    return model.model.rotary_emb(torch.from_numpy(x), torch.from_numpy(positions).long())


def test_mlp_matches_transformers(loaded):
    _, model, cfg, params = loaded
    x, _ = _hidden_inputs()
    ours = GatedMLP(cfg, RuntimeConfig()).apply(
        {"params": params["layers_0"]["mlp"]}, jnp.asarray(x), {}
    )
    with torch.no_grad():
        ref = model.model.layers[0].mlp(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=0, atol=MODULE_TOL)


def test_attention_matches_transformers(loaded):
    _, model, cfg, params = loaded
    x, mask = _hidden_inputs()
    positions, (sin, cos) = _rope_tables(cfg, mask)
    ours, _ = SelfAttention(cfg, RuntimeConfig()).apply(
        {"params": params["layers_0"]["self_attn"]},
        jnp.asarray(x),
        sin,
        cos,
        jnp.asarray(mask, bool),
        {},
    )
    with torch.no_grad():
        ref, _ = model.model.layers[0].self_attn(
            torch.from_numpy(x),
            position_embeddings=_torch_rope(model, x, positions),
            attention_mask=torch_additive_mask(mask),
        )
    np.testing.assert_allclose(np.asarray(ours), ref.numpy(), rtol=0, atol=MODULE_TOL)


def test_decoder_layer_matches_transformers(loaded):
    _, model, cfg, params = loaded
    x, mask = _hidden_inputs()
    positions, (sin, cos) = _rope_tables(cfg, mask)
    ours, kv = DecoderLayer(cfg, RuntimeConfig()).apply(
        {"params": params["layers_1"]},
        jnp.asarray(x),
        sin,
        cos,
        jnp.asarray(mask, bool),
        None,
        None,
        None,
        None,
        "train",
    )
    assert kv is None
    with torch.no_grad():
        ref = model.model.layers[1](
            torch.from_numpy(x),
            attention_mask=torch_additive_mask(mask),
            position_ids=torch.from_numpy(positions).long(),
            position_embeddings=_torch_rope(model, x, positions),
        )
    ref = ref[0] if isinstance(ref, tuple) else ref
    np.testing.assert_allclose(np.asarray(ours), ref.numpy(), rtol=0, atol=MODULE_TOL)


@pytest.mark.parametrize("scan", [False, True], ids=["loop", "scan"])
def test_full_logits_match_transformers(loaded, scan, tmp_path_factory):
    case, model, cfg, params = loaded
    if scan:
        # The same checkpoint loaded straight into the stacked layout.
        path = tmp_path_factory.mktemp(case + "_scan")
        model.save_pretrained(str(path))
        cfg, params = load_hf_causal_lm(str(path), scan=True)
        assert "layers" in params and "layers_0" not in params
    ids, mask = padded_batch(LENGTHS, SEQ, seed=3)
    ours = CausalLM(cfg, RuntimeConfig(scan_layers=scan)).apply(
        {"params": params}, jnp.asarray(ids), jnp.asarray(mask)
    )
    assert ours.dtype == jnp.float32
    with torch.no_grad():
        ref = model(
            torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long()
        ).logits
    valid = mask.astype(bool)  # HF's logits at padding positions use other positions; not compared
    err = np.abs(np.asarray(ours) - ref.numpy())[valid].max()
    assert err < LOGITS_TOL, f"{case}: max abs logit difference {err}"
