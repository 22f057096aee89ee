"""Reading a GGUF file's header and metadata (the ``gguf`` package's reader, with errors that say
what to do). Shared by the weight converter (jaxlvlm.convert.gguf) and the tokenizer loader
(jaxlvlm.data.gguf_tokenizer)."""

from __future__ import annotations

import os
from typing import Any

import gguf

from jaxlvlm.errors import ConversionError


def open_gguf(path: str):
    """Opens ``path`` with ``gguf.GGUFReader``; a missing or corrupt file raises ConversionError."""
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: no such GGUF file")
    try:
        return gguf.GGUFReader(path)
    except Exception as e:  # noqa: BLE001 - the reader raises assorted errors on bad bytes
        raise ConversionError(
            f"{path}: not a readable GGUF file ({type(e).__name__}: {e}); the file may be truncated "
            "or not GGUF at all. Re-download or re-export it with llama.cpp's convert script."
        ) from e


def gguf_metadata(reader) -> dict[str, Any]:
    """All key/value metadata of a GGUF file as plain Python values (strings, numbers, lists)."""
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        try:
            out[key] = field.contents()
        except Exception:  # noqa: BLE001 - exotic nested arrays are not needed for Llama
            continue
    return out
