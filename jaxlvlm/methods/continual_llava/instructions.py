"""Instruction embeddings by the frozen sentence encoder for batches (host side, Continual LLaVA).

The prompt text of each row is recovered from the batch itself (the tokens that are real, not an
answer and not an image placeholder, decoded without special tokens), embedded with all-MiniLM-L6-v2
in JAX (jaxlvlm.methods.instruction_embedding) and added to the batch as 'instruction_embedding'
[B, 384]. Training batches get it from a wrapping iterator (per process, before the rows become
global arrays); evaluation batches through ``embed_global_batch``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxlvlm.data.global_batch import to_global_batch
from jaxlvlm.methods.instruction_embedding import embed_instructions, load_instruction_encoder
from jaxlvlm.methods.instruction_text import PromptMarkers, instruction_text, prompt_markers

INSTRUCTION_EMBEDDING = "instruction_embedding"


@functools.cache
def minilm_encoder():
    """The frozen all-MiniLM-L6-v2 encoder, loaded once per process."""
    return load_instruction_encoder()


@functools.cache
def _markers(tokenizer) -> PromptMarkers:
    return prompt_markers(tokenizer)


def instruction_texts(batch: dict[str, np.ndarray], tokenizer, image_token_id: int) -> list[str]:
    """The instruction text of every row: [B] strings ('' for padding rows).

    Same token selection as jaxlvlm.methods.prompt_pool.instruction_token_mask, decoded with the
    template's markers kept, then only the user turns' content (instruction_text): the chat
    template's role words would make every instruction look alike to the encoder.
    """
    ids = np.asarray(batch["input_ids"])
    real = np.asarray(batch["attention_mask"]).astype(bool)
    lm = np.asarray(batch["loss_mask"]).astype(bool)
    answer = np.concatenate([np.zeros_like(lm[:, :1]), lm[:, :-1]], axis=1)
    keep = real & ~answer & (ids != image_token_id)
    markers = _markers(tokenizer)
    return [
        instruction_text(tokenizer.decode(row[k].tolist(), skip_special_tokens=False), markers)
        for row, k in zip(ids, keep, strict=True)
    ]


class EmbeddingIterator:
    """Wraps a jaxlvlm.data.pipeline.TrainIterator: adds 'instruction_embedding' to each batch."""

    def __init__(self, inner, encoder, tokenizer, image_token_id: int, mesh, process_count: int):
        self.inner = inner
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.image_token_id = image_token_id
        self.mesh = mesh
        self.process_count = process_count

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, Any]:
        local = dict(self.inner.next_host_batch())
        texts = instruction_texts(local, self.tokenizer, self.image_token_id)
        local[INSTRUCTION_EMBEDDING] = embed_instructions(self.encoder, texts)
        if self.mesh is None:
            return local
        return to_global_batch(local, self.mesh, self.process_count)

    def get_state(self):
        return self.inner.get_state()

    def set_state(self, state) -> None:
        self.inner.set_state(state)

    def bad_sample_summary(self):
        return self.inner.bad_sample_summary()


def embed_global_batch(batch: dict, encoder, tokenizer, image_token_id: int) -> np.ndarray:
    """[B, 384] embeddings of a global batch's prompts, the same on every process.

    With several processes each holds only its rows, so the token arrays are gathered first
    (a few small int arrays); every process then embeds all B prompts.
    """
    keys = ("input_ids", "attention_mask", "loss_mask")
    if jax.process_count() > 1:
        host = {
            k: np.asarray(multihost_utils.process_allgather(batch[k], tiled=True)) for k in keys
        }
    else:
        host = {k: np.asarray(jax.device_get(batch[k])) for k in keys}
    return embed_instructions(encoder, instruction_texts(host, tokenizer, image_token_id))
