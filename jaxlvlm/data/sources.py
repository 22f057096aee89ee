"""Random-access record sources (``len(src)``, ``src[i] -> record``) that Grain reads from.

Each returns raw records per the contract in jaxlvlm/data/records.py; the pipeline validates them, so a
source may raise ``BadSample`` from ``__getitem__`` (e.g. a missing image of a LLaVA JSON entry) and the
pipeline's policy decides. ``location(i)`` names where sample i lives, for error messages.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from jaxlvlm.data.bad_samples import BadSample
from jaxlvlm.data.builtin import BuiltinSource
from jaxlvlm.data.llava_json import iter_llava_entries, llava_entry_to_record
from jaxlvlm.data.tfds_builder import open_tfds_source


class RecordSource(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


def source_location(source: Any, index: int) -> str:
    """Where sample ``index`` of ``source`` lives ('name[index]' by default)."""
    if hasattr(source, "location"):
        return source.location(index)
    return f"{type(source).__name__}[{index}]"


class ListSource:
    """Records held in memory (generated on the fly, or read from a small file)."""

    def __init__(self, records: Sequence[dict[str, Any]], name: str = "records"):
        self._records = list(records)
        self.name = name

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._records[index]

    def location(self, index: int) -> str:
        return f"{self.name}[{index}]"


class SubsetSource:
    """The samples ``indices`` of a parent source (a client partition, a selected pool subset).

    ``parent_index(i)`` maps back to the parent, so sample_index in batches can refer to the parent.
    """

    def __init__(self, parent: Any, indices: Sequence[int] | np.ndarray, name: str | None = None):
        self.parent = parent
        self.indices = np.asarray(indices, np.int64)
        if self.indices.ndim != 1:
            raise ValueError("SubsetSource indices must be 1-D")
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(parent)):
            raise IndexError(f"SubsetSource indices out of range [0, {len(parent)})")
        self.name = name or f"subset({getattr(parent, 'name', type(parent).__name__)})"

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.parent[int(self.indices[index])]

    def parent_index(self, index: int) -> int:
        return int(self.indices[index])

    def task_id_of(self, index: int) -> int | None:
        """The parent's per-sample task id (a pool's), or None when the parent has none."""
        if hasattr(self.parent, "task_id_of"):
            return self.parent.task_id_of(int(self.indices[index]))
        return None

    def location(self, index: int) -> str:
        return source_location(self.parent, int(self.indices[index]))


class LlavaJsonSource:
    """A LLaVA JSON/JSONL file read lazily: entries parsed once, images read when a sample is asked for.

    A malformed line or a bad image surfaces as ``BadSample`` from ``__getitem__`` with file and line.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        image_root: str | os.PathLike,
        check_images: bool = False,
        default_task: str = "default",
    ):
        self._entries = list(iter_llava_entries(path))
        self.image_root = image_root
        self.check_images = check_images
        self.default_task = default_task
        self.name = str(path)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        location, entry = self._entries[index]
        if isinstance(entry, BadSample):
            raise entry
        return llava_entry_to_record(
            entry, self.image_root, location, self.check_images, self.default_task
        )

    def location(self, index: int) -> str:
        return self._entries[index][0]


def builtin_source(
    family: str,
    split: str,
    num: int,
    seed: int,
    domain: str = "plain",
    image_size: int = 32,
    task: str | None = None,
    wording: str = "shared",
) -> Any:
    """The built-in suite's records, generated on access (jaxlvlm.data.builtin.BuiltinSource)."""

    return BuiltinSource(
        family, split, num, seed, domain=domain, image_size=image_size, task=task, wording=wording
    )


def source_from_spec(spec: dict[str, Any], seed: int, image_size: int) -> Any:
    """A source spec (plain dict from the config) -> a record source.

    {'type': 'builtin', 'family', 'split', 'num', 'domain'='plain', 'seed'=<run seed>, 'image_size',
     'wording'='shared'|'domain'}
      (records generated on access; their 'task' is the spec's 'task' or the family[-domain] name;
      'wording': 'domain' gives each domain its own question phrasings, jaxlvlm.data.builtin.wording)
    {'type': 'tfds', 'data_dir', 'name', 'split'}            (written by tools/import_llava_data.py)
    {'type': 'llava_json', 'path', 'image_root', 'check_images'=False, 'default_task'='default'}
    'weight' is read by the pipeline; 'task' names the task (for builtin also the records' 'task'). Unknown keys are an error.
    """
    spec = dict(spec)
    kind = spec.pop("type", None)
    task = spec.pop("task", None)
    spec.pop("weight", None)
    if kind not in ("builtin", "tfds", "llava_json"):
        raise ValueError(
            f"data source type {kind!r}: expected 'builtin', 'tfds' or 'llava_json' ({spec})"
        )
    try:
        if kind == "builtin":
            source = builtin_source(
                spec.pop("family"),
                spec.pop("split"),
                int(spec.pop("num")),
                int(spec.pop("seed", seed)),
                domain=spec.pop("domain", "plain"),
                image_size=int(spec.pop("image_size", image_size)),
                task=task,
                wording=spec.pop("wording", "shared"),
            )
        elif kind == "tfds":
            source = open_tfds_source(spec.pop("data_dir"), spec.pop("name"), spec.pop("split"))
        else:
            source = LlavaJsonSource(
                spec.pop("path"),
                spec.pop("image_root"),
                bool(spec.pop("check_images", False)),
                spec.pop("default_task", "default"),
            )
    except KeyError as e:
        raise KeyError(f"data source spec of type {kind!r} is missing key {e}") from None
    if spec:
        raise KeyError(f"data source spec of type {kind!r}: unknown keys {sorted(spec)}")
    return source
