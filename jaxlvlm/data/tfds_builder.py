"""A TFDS builder that writes records (the data contract) as an array_record dataset, no TensorFlow.

Images are stored as encoded bytes (``tfds.features.Tensor(dtype=object)``: ``tfds.features.Image``
needs TensorFlow), conversations as a JSON string, plus a stable 'index' (position at write time):
tfds hands records back in a shuffled order. Read back with ``open_tfds_source`` (``tfds``'s
``builder_from_directory(...).as_data_source``: random access, plugs into Grain).

Layout: <data_dir>/jaxlvlm_records/<name>/<version>/ with one array_record file set per split.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import utils as tfds_utils

from jaxlvlm.data.bad_samples import BadSample
from jaxlvlm.data.builtin import make_records
from jaxlvlm.data.records import validate_record
from jaxlvlm.files import cached_copy, local_output_dir, run_path

BUILDER_NAME = "jaxlvlm_records"
VERSION = "1.0.0"

SplitRecords = Mapping[str, Callable[[], Iterable[dict[str, Any]]]]


class JaxlvlmRecords(tfds.core.GeneratorBasedBuilder):
    """Records per the jaxlvlm data contract; one builder config per dataset name.

    ``split_records`` maps split name -> a zero-argument callable returning an iterable of records
    (a callable so a large import streams instead of holding everything in memory).
    """

    VERSION = tfds.core.Version(VERSION)
    RELEASE_NOTES = {
        "1.0.0": "Records: id, index, images (encoded bytes), conversations (JSON), task, answer, scorer."
    }

    # tfds locates a builder's source through importlib_resources, a package it does not install;
    # naming the file directly avoids that import (the path is only used to look for checksums).
    @tfds_utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(__file__)

    def __init__(self, *, split_records: SplitRecords | None = None, **kwargs):
        self._split_records = split_records
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="LLaVA-style conversation records written by jaxlvlm.",
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "index": np.int64,
                    "images": tfds.features.Sequence(
                        tfds.features.Tensor(shape=(), dtype=np.object_)
                    ),
                    "conversations": tfds.features.Text(),
                    "task": tfds.features.Text(),
                    "answer": tfds.features.Text(),
                    "scorer": tfds.features.Text(),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        if self._split_records is None:
            raise ValueError(
                f"{BUILDER_NAME}: pass split_records to write a dataset (reading needs none)"
            )
        return {split: self._generate_examples(make) for split, make in self._split_records.items()}

    def _generate_examples(self, make_records):
        seen: set[str] = set()
        for index, record in enumerate(make_records()):
            record = validate_record(record, location=f"record {index}")
            # The id is the example key: tfds needs keys unique within a split.
            key = record["id"]
            if key in seen:
                raise ValueError(
                    f"{BUILDER_NAME}: duplicate sample id {key!r} (record {index}); ids must be unique per split"
                )
            seen.add(key)
            yield (
                key,
                {
                    "id": key,
                    "index": index,
                    "images": [bytes(b) for b in record["images"]],
                    "conversations": json.dumps(record["conversations"], ensure_ascii=False),
                    "task": str(record["task"]),
                    "answer": str(record["answer"]),
                    "scorer": str(record["scorer"]),
                },
            )


def dataset_dir(data_dir: str | os.PathLike, name: str) -> epath.Path:
    """<data_dir>/jaxlvlm_records/<name>/<version>: the directory open_tfds_source reads (local or
    a URL such as gs://bucket/data)."""
    return run_path(data_dir) / BUILDER_NAME / name / VERSION


def write_tfds_dataset(
    data_dir: str | os.PathLike, name: str, split_records: SplitRecords, description: str = ""
) -> epath.Path:
    """Writes records as an array_record TFDS dataset; returns its directory.

    Args:
      data_dir: root data directory.
      name: dataset name (letters, digits, underscores), the builder config name.
      split_records: {'train': callable -> iterable of records, ...}.
    Raises:
      FileExistsError if the dataset already exists (delete it or choose another name).
    """
    out = dataset_dir(data_dir, name)
    if (out / "dataset_info.json").exists():
        raise FileExistsError(f"{out} already exists; delete it or choose another dataset name")
    config = tfds.core.BuilderConfig(name=name, description=description or name)
    # array_record's writer opens local files only: a remote data_dir is written locally, then
    # copied file by file, dataset_info.json last: open_tfds_source takes a dataset without it
    # for missing, so a reader never opens a half-copied one.
    with local_output_dir(data_dir, last="dataset_info.json") as local:
        builder = JaxlvlmRecords(
            data_dir=local,
            config=config,
            split_records=split_records,
            file_format="array_record",
        )
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(verify_ssl=False))
    return out


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def decode_stored_record(example: dict[str, Any]) -> dict[str, Any]:
    """A record as stored by jaxlvlm.data.tfds_builder (bytes fields, JSON conversations) -> a record."""
    try:
        conversations = json.loads(_text(example["conversations"]))
    except json.JSONDecodeError as e:
        raise BadSample(
            "malformed_record",
            _text(example.get("id", "?")),
            f"stored conversations are not JSON: {e}",
        ) from e
    return {
        "id": _text(example["id"]),
        "index": int(example["index"]),
        "images": [bytes(b) for b in example["images"]],
        "conversations": conversations,
        "task": _text(example["task"]),
        "answer": _text(example["answer"]),
        "scorer": _text(example["scorer"]),
    }


class TfdsSource:
    """An array_record dataset written by jaxlvlm.data.tfds_builder, read with tfds (no TensorFlow).

    ``path`` is the dataset's version directory (<data_dir>/<builder>/<config>/<version>), or use
    ``jaxlvlm.data.tfds_builder.open_tfds_source(data_dir, name, split)``. tfds returns records in a
    shuffled but fixed order; each keeps its stable 'id' and 'index' (position at write time).
    """

    def __init__(self, path: str | os.PathLike, split: str):
        builder = tfds.builder_from_directory(str(path))
        if split not in builder.info.splits:
            raise KeyError(f"{path}: no split {split!r}; it has {sorted(builder.info.splits)}")
        self._source = builder.as_data_source(split=split)
        self.name = f"{builder.info.full_name}:{split}"

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return decode_stored_record(self._source[index])

    def location(self, index: int) -> str:
        return f"{self.name}[{index}]"


def open_tfds_source(data_dir: str | os.PathLike, name: str, split: str) -> TfdsSource:
    """Random-access source over a dataset written by write_tfds_dataset (no TensorFlow)."""
    path = dataset_dir(data_dir, name)
    if not (path / "dataset_info.json").exists():
        raise FileNotFoundError(
            f"no jaxlvlm TFDS dataset {name!r} under {data_dir} (expected {path})"
        )
    # array_record's reader opens local files (given a gs:// name it hung against the emulator):
    # a remote dataset is read from a local copy, downloaded once (jaxlvlm.files.cached_copy).
    return TfdsSource(cached_copy(path), split)


def write_builtin_suite(
    data_dir: str | os.PathLike,
    families: Iterable[str],
    splits: Mapping[str, int],
    seed: int,
    domain: str = "plain",
    image_size: int = 32,
) -> dict[str, epath.Path]:
    """Writes built-in families once to a data dir: one dataset '<family>_<domain>' per family.

    Args:
      splits: {'train': num, 'val': num, ...} samples per split.
    Returns:
      {family: dataset directory}.
    """

    out = {}
    for family in families:
        split_records = {
            split: (
                lambda s=split, n=num, f=family: make_records(
                    f, s, n, seed, domain=domain, image_size=image_size
                )
            )
            for split, num in splits.items()
        }
        out[family] = write_tfds_dataset(data_dir, f"{family}_{domain}", split_records)
    return out
