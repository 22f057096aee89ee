"""Reading LLaVA conversation data (JSON array or JSONL) with images under an image root.

An entry: {'id': str, 'image': 'rel/path.png' | ['a.png', 'b.png'] (optional; none = text-only),
'conversations': [{'from': 'human' | 'gpt', 'value': str with '<image>'}], 'task': str (optional),
'answer': str (optional), 'scorer': str (optional)}. It becomes a record (jaxlvlm/data/records.py)
with the images read as encoded bytes.

Every problem is a ``BadSample`` naming the file, line (JSONL) or entry number (JSON), the sample id and
the reason; ``iter_llava_records`` hands them to a ``BadSamplePolicy``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jaxlvlm.data.bad_samples import BadSample, BadSamplePolicy
from jaxlvlm.data.images import check_image_bytes
from jaxlvlm.data.records import validate_record


def iter_llava_entries(path: str | os.PathLike) -> Iterator[tuple[str, dict[str, Any] | BadSample]]:
    """Yields (location, entry) per sample; a malformed JSONL line yields (location, BadSample).

    A '.jsonl' file is read line by line (blank lines ignored); any other file as one JSON array.

    Raises:
      FileNotFoundError if the file does not exist; ValueError if a JSON array file is malformed as a
      whole (no single sample can be blamed, so it cannot be skipped).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LLaVA data file {path} does not exist")
    if path.suffix == ".jsonl":
        # Binary read, one decode per line: a stray Latin-1 byte spoils one sample, not the file.
        with path.open("rb") as f:
            for line_no, raw in enumerate(f, start=1):
                location = f"{path}:{line_no}"
                try:
                    line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    yield location, _undecodable_line(raw, e, location)
                    continue
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as e:
                    yield (
                        location,
                        BadSample(
                            "malformed_json",
                            "?",
                            f"line is not valid JSON ({e.msg} at column {e.colno})",
                            location,
                        ),
                    )
                    continue
                if not isinstance(entry, dict):
                    yield (
                        location,
                        BadSample(
                            "malformed_json",
                            "?",
                            f"line holds a {type(entry).__name__}, expected a JSON object",
                            location,
                        ),
                    )
                    continue
                yield location, entry
        return
    try:
        with path.open("r", encoding="utf-8-sig") as f:
            data = json.load(f)
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: byte {e.object[e.start]:#04x} at offset {e.start} is not UTF-8; a JSON array "
            "file must decode as a whole. Re-encode it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or "
            "convert it to JSONL so an undecodable sample can be skipped on its own."
        ) from e
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); a JSON array file "
            "must parse as a whole. Fix it, or convert it to JSONL so bad lines can be skipped one by one."
        ) from e
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON array of samples, got a {type(data).__name__}")
    for k, entry in enumerate(data):
        location = f"{path}[{k}]"
        if not isinstance(entry, dict):
            yield (
                location,
                BadSample(
                    "malformed_json",
                    "?",
                    f"entry is a {type(entry).__name__}, expected an object",
                    location,
                ),
            )
            continue
        yield location, entry


def _undecodable_line(raw: bytes, err: UnicodeDecodeError, location: str) -> BadSample:
    """The BadSample of a JSONL line that is not UTF-8, naming the byte, its column and the id if
    the line's ASCII part shows one."""
    text = raw.decode("utf-8", errors="replace")
    try:
        sid = str(json.loads(text).get("id", "?"))
    except (json.JSONDecodeError, AttributeError):
        sid = "?"
    return BadSample(
        "not_utf8",
        sid,
        f"byte {raw[err.start]:#04x} at column {err.start + 1} is not valid UTF-8 (LLaVA JSONL is "
        "UTF-8); re-encode the file, e.g. `iconv -f latin1 -t utf-8`",
        location,
    )


def resolve_image_path(
    image_root: str | os.PathLike, rel: str, sample_id: str, location: str
) -> Path:
    """Resolves ``rel`` under ``image_root``; refuses paths that escape the root (.., absolute, links)."""
    root = Path(image_root).resolve()
    if not isinstance(rel, str) or not rel:
        raise BadSample(
            "malformed_record",
            sample_id,
            f"image path {rel!r} must be a non-empty string",
            location,
        )
    full = (root / rel).resolve()
    if not full.is_relative_to(root):
        raise BadSample(
            "image_outside_root",
            sample_id,
            f"image path {rel!r} resolves to {full}, outside the image root {root}; "
            "keep images under the image root and use relative paths",
            location,
        )
    if not full.is_file():
        raise BadSample("missing_image", sample_id, f"image {rel!r} not found at {full}", location)
    return full


def llava_entry_to_record(
    entry: dict[str, Any],
    image_root: str | os.PathLike,
    location: str = "",
    check_images: bool = True,
    default_task: str = "default",
) -> dict[str, Any]:
    """One LLaVA entry -> a validated record with image bytes (see module docstring).

    Raises:
      BadSample for a missing id-less structure, missing/escaping/unreadable image, no assistant turn,
      '<image>' count mismatch.
    """
    sid = str(entry.get("id", location or "?"))
    image_field = entry.get("image", [])
    if image_field is None:
        image_field = []
    paths = [image_field] if isinstance(image_field, str) else image_field
    if not isinstance(paths, list):
        raise BadSample(
            "malformed_record", sid, "'image' must be a path or a list of paths", location
        )
    images = []
    for slot, rel in enumerate(paths):
        full = resolve_image_path(image_root, rel, sid, location)
        data = full.read_bytes()
        if check_images:
            try:
                check_image_bytes(data, sid, slot)
            except BadSample as e:
                raise BadSample(e.reason, sid, f"{rel!r}: {e.detail}", location) from e
        images.append(data)
    record = {
        "id": sid,
        "images": images,
        "conversations": entry.get("conversations"),
        "task": str(entry.get("task", default_task)),
    }
    for key in ("answer", "scorer"):
        if entry.get(key) is not None:
            record[key] = str(entry[key])
    return validate_record(record, location)


def iter_llava_records(
    path: str | os.PathLike,
    image_root: str | os.PathLike,
    policy: BadSamplePolicy,
    check_images: bool = True,
    default_task: str = "default",
) -> Iterator[dict[str, Any]]:
    """Yields the valid records of a LLaVA JSON/JSONL file; bad ones go to ``policy`` (raise or count)."""
    for location, entry in iter_llava_entries(path):
        try:
            if isinstance(entry, BadSample):
                raise entry
            yield llava_entry_to_record(entry, image_root, location, check_images, default_task)
        except BadSample as e:
            policy.handle(e.with_location(location))


def read_llava_records(
    path: str | os.PathLike,
    image_root: str | os.PathLike,
    policy: BadSamplePolicy | None = None,
    check_images: bool = True,
    default_task: str = "default",
) -> list[dict[str, Any]]:
    """All valid records of a LLaVA file as a list (policy defaults to on_bad_sample='error')."""
    policy = policy if policy is not None else BadSamplePolicy()
    return list(iter_llava_records(path, image_root, policy, check_images, default_task))
