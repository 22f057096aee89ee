"""Loading a tokenizer with a chat template: a transformers directory, a GGUF file, or 'builtin'.

``load_tokenizer(spec)``:
  - 'builtin': the built-in suite's BPE tokenizer (jaxlvlm.data.builtin.builtin_tokenizer_path()).
  - a directory: ``transformers.AutoTokenizer.from_pretrained(dir)`` (tokenizer.json + tokenizer_config.json).
  - either of these on object storage (gs://...): read from a temporary local copy.
  - a '.gguf' file: the tokenizer stored in the file (jaxlvlm.data.gguf_tokenizer.load_gguf_tokenizer,
    falling back to transformers' own GGUF reader when that module is not available).
The pipeline needs a fast tokenizer (offset mappings) and a chat template; both are checked here.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from jaxlvlm.data.builtin import builtin_tokenizer_path
from jaxlvlm.data.gguf_tokenizer import load_gguf_tokenizer
from jaxlvlm.files import is_remote, local_copy


def load_tokenizer(spec: str | os.PathLike) -> PreTrainedTokenizerBase:
    """Loads a fast tokenizer with a chat template from 'builtin', a directory or a .gguf file.

    Raises:
      FileNotFoundError for a path that does not exist; ValueError if the tokenizer is not a fast
      tokenizer or has no chat template (say which file to fix).
    """
    spec = os.fspath(spec)
    if is_remote(spec):
        # transformers and the GGUF reader take local files: read a copy of the tokenizer's files
        # (a directory's top level only: a converted checkpoint's params/ are not needed here).
        with local_copy(spec, recursive=False) as local:
            return load_tokenizer(local)
    if spec == "builtin":
        spec = builtin_tokenizer_path()
    path = Path(spec)
    if path.is_file() and path.suffix == ".gguf":
        tokenizer = load_gguf_tokenizer(str(path))
    elif path.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    else:
        raise FileNotFoundError(
            f"tokenizer {spec!r}: expected 'builtin', a transformers tokenizer directory or a .gguf file"
        )
    check_tokenizer(tokenizer, spec)
    return tokenizer


def load_tokenizer_with_template(
    spec: str | os.PathLike, chat_template: str | os.PathLike | None = None
) -> PreTrainedTokenizerBase:
    """``load_tokenizer(spec)``, or, with ``chat_template`` (a Jinja file), the tokenizer at
    ``spec`` given that template: for a base LM whose tokenizer has none.

    Raises ValueError naming both what is missing and the option that supplies it.
    """
    if not chat_template:
        try:
            return load_tokenizer(spec)
        except ValueError as e:
            raise ValueError(
                f"{e}; a base LM without a chat template needs a chat template file "
                "(tools/assemble_llava.py --chat_template, configs/llava15.py chat_template=)"
            ) from e
    spec = str(spec)
    if os.path.isdir(spec):
        tokenizer = AutoTokenizer.from_pretrained(spec)
    elif os.path.isfile(spec) and spec.endswith(".gguf"):
        tokenizer = load_gguf_tokenizer(spec)
    else:
        raise FileNotFoundError(
            f"tokenizer {spec!r}: expected a transformers tokenizer directory or a .gguf file"
        )
    tokenizer.chat_template = Path(chat_template).read_text()
    check_tokenizer(tokenizer, spec)
    return tokenizer


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, name: str = "tokenizer") -> None:
    """Raises ValueError unless the tokenizer is fast (offsets) and has a chat template."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{name}: the data pipeline needs a fast tokenizer (tokenizer.json) for offset mappings"
        )
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"{name}: the tokenizer has no chat template; add 'chat_template' to tokenizer_config.json"
        )


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id used for padding positions (they are masked out; the id only needs to be valid)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0
