"""A Flower RecordDict as bytes, without pickle: how the ClientApp and the warm site process talk.

One frame = an 8-byte little-endian header length, a JSON header, then an ``.npz`` archive (read
with ``allow_pickle=False``). The header holds the envelope (what the frame asks or answers) and,
per record, either a ConfigRecord's values (scalars, strings and lists of them) or an
ArrayRecord's keys in order; the archive holds the arrays as '<record>.<position>'.
"""

from __future__ import annotations

import io
import json
import struct

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

_LENGTH = struct.Struct("<Q")


def pack(records: RecordDict, envelope: dict) -> bytes:
    """Bytes of ``records`` with ``envelope`` (a JSON-able dict) in front."""
    described, arrays = {}, {}
    for name, record in records.items():
        if isinstance(record, ConfigRecord):
            described[name] = {"config": dict(record)}
        elif isinstance(record, ArrayRecord):
            keys = list(record.keys())
            described[name] = {"arrays": keys}
            for i, key in enumerate(keys):
                arrays[f"{name}.{i}"] = record[key].numpy()
        else:
            raise TypeError(
                f"record '{name}' is a {type(record).__name__}; only ConfigRecords and "
                "ArrayRecords travel between the ClientApp and the site process"
            )
    try:
        header = json.dumps({"envelope": envelope, "records": described}).encode()
    except TypeError as e:
        raise TypeError(f"a ConfigRecord value cannot travel as JSON: {e}") from e
    archive = io.BytesIO()
    np.savez(archive, **arrays)
    return _LENGTH.pack(len(header)) + header + archive.getvalue()


def unpack(frame: bytes) -> tuple[dict, RecordDict]:
    """(envelope, records) of a ``pack`` frame; ValueError for bytes that are not one."""
    if len(frame) < _LENGTH.size:
        raise ValueError(f"a frame of {len(frame)} bytes is too short to hold its header")
    (size,) = _LENGTH.unpack_from(frame)
    try:
        header = json.loads(frame[_LENGTH.size : _LENGTH.size + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"the frame's header is not JSON: {e}") from e
    with np.load(io.BytesIO(frame[_LENGTH.size + size :]), allow_pickle=False) as archive:
        records = {}
        for name, spec in header["records"].items():
            if "config" in spec:
                records[name] = ConfigRecord(spec["config"])
            else:
                records[name] = ArrayRecord(
                    {k: Array(archive[f"{name}.{i}"]) for i, k in enumerate(spec["arrays"])}
                )
    return header["envelope"], RecordDict(records)
