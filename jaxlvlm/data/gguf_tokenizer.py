"""The tokenizer and chat template stored in a GGUF file, as a transformers fast tokenizer.

Byte-level BPE vocabularies (``tokenizer.ggml.model == 'gpt2'``) with GPT-2's or SmolLM's
pre-tokenizer are rebuilt here directly from the file's token list, merges and token types with the
``tokenizers`` library. Other tokenizers (SentencePiece 'llama', other pre-tokenizer regexes) go
through transformers' own GGUF converter, which also reads the file offline.
"""

from __future__ import annotations

import os

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

from jaxlvlm.errors import ConversionError
from jaxlvlm.gguf_reader import gguf_metadata, open_gguf

# llama.cpp token types (gguf.TokenType): CONTROL tokens are special (never split, skipped on
# decode with skip_special_tokens); USER_DEFINED tokens are matched verbatim but are ordinary text.
_CONTROL = 3
_USER_DEFINED = 4

# llama.cpp pre-tokenizer names rebuilt here: GPT-2's regex, and SmolLM's (single digits first, then
# GPT-2's regex). Others (llama3's 1-3 digit groups, qwen2, ...) go to transformers' converter.
_GPT2_PRE = (None, "default", "gpt2")
_DIGIT_SPLIT_PRE = ("smollm",)


def _bpe_tokenizer(meta: dict, path: str):

    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    merges_raw = meta.get("tokenizer.ggml.merges")
    if merges_raw is None:
        raise ConversionError(f"{path}: byte-level BPE tokenizer without 'tokenizer.ggml.merges'")
    merges = []
    for m in merges_raw:
        left, sep, right = m.partition(" ")
        if not sep:
            raise ConversionError(f"{path}: malformed BPE merge {m!r} in tokenizer.ggml.merges")
        merges.append((left, right))
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ConversionError(f"{path}: tokenizer.ggml.tokens holds duplicate tokens")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))

    add_prefix_space = bool(meta.get("tokenizer.ggml.add_space_prefix", False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=True)
    if meta.get("tokenizer.ggml.pre") in _DIGIT_SPLIT_PRE:
        # As llama.cpp's pre-tokenizer regex for these models: each digit is its own pre-token.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()

    types = list(meta.get("tokenizer.ggml.token_type", [1] * len(tokens)))
    if len(types) != len(tokens):
        raise ConversionError(
            f"{path}: tokenizer.ggml.token_type has {len(types)} entries for {len(tokens)} tokens"
        )
    tok.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t, ty in zip(tokens, types, strict=True)
            if ty == _CONTROL
        ]
    )
    tok.add_tokens(
        [
            AddedToken(t, special=False, normalized=False)
            for t, ty in zip(tokens, types, strict=True)
            if ty == _USER_DEFINED
        ]
    )

    bos_id = meta.get("tokenizer.ggml.bos_token_id")
    if meta.get("tokenizer.ggml.add_bos_token", False) and bos_id is not None:
        bos = tokens[int(bos_id)]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0",
            pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
            special_tokens=[(bos, int(bos_id))],
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok, tokens


def load_gguf_tokenizer(path: str):
    """The tokenizer of a GGUF file, with its chat template and special tokens.

    Args:
      path: a .gguf file.
    Returns:
      a ``transformers.PreTrainedTokenizerFast``; ``chat_template`` is the file's
      ``tokenizer.chat_template`` (None if the file has none); bos/eos/unk/pad tokens come from the
      ``tokenizer.ggml.*_token_id`` keys.
    Raises:
      ConversionError: unreadable file or a file without a tokenizer.
    """
    from transformers import (  # transformers: heavy, only when this loader runs
        AutoTokenizer,
        PreTrainedTokenizerFast,
    )

    reader = open_gguf(path)
    meta = gguf_metadata(reader)
    model = meta.get("tokenizer.ggml.model")
    if model is None or "tokenizer.ggml.tokens" not in meta:
        raise ConversionError(
            f"{path}: the GGUF file holds no tokenizer (no 'tokenizer.ggml.model'/'tokens'); "
            "load the tokenizer from the original model directory instead"
        )
    if model != "gpt2" or meta.get("tokenizer.ggml.pre") not in _GPT2_PRE + _DIGIT_SPLIT_PRE:
        # SentencePiece vocabularies and other pre-tokenizer regexes: transformers' converter.
        return AutoTokenizer.from_pretrained(
            os.path.dirname(os.path.abspath(path)) or ".", gguf_file=os.path.basename(path)
        )

    backend, tokens = _bpe_tokenizer(meta, path)
    specials = {}
    for name in ("bos", "eos", "unknown", "padding"):
        idx = meta.get(f"tokenizer.ggml.{name}_token_id")
        if idx is not None and 0 <= int(idx) < len(tokens):
            key = {"unknown": "unk_token", "padding": "pad_token"}.get(name, f"{name}_token")
            specials[key] = tokens[int(idx)]
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        chat_template=meta.get("tokenizer.chat_template"),
        clean_up_tokenization_spaces=False,
        model_max_length=int(meta.get(f"{meta.get('general.architecture')}.context_length", 2048)),
        **specials,
    )
