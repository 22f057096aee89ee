"""The built-in benchmark suite: synthetic shape scenes, rendered text and real handwritten digits,
generated deterministically on the fly (no download), plus its own small BPE tokenizer."""

from jaxlvlm.data.builtin.bpe_tokenizer import builtin_tokenizer_path
from jaxlvlm.data.builtin.domains import DOMAINS, list_domains
from jaxlvlm.data.builtin.registry import (
    FAMILIES,
    SPLITS,
    BuiltinSource,
    Family,
    get_family,
    list_families,
    make_record,
    make_records,
    task_name,
)

__all__ = [
    "DOMAINS",
    "FAMILIES",
    "SPLITS",
    "BuiltinSource",
    "builtin_tokenizer_path",
    "Family",
    "get_family",
    "list_domains",
    "list_families",
    "make_record",
    "make_records",
    "task_name",
]
