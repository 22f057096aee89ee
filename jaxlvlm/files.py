"""Run files: JSON records written atomically, read back, and a clear error when storage fails.

Every record a run writes next to its checkpoints (phase.json, summaries, probe scores, selections)
goes through ``write_json_atomic``: a reader never sees half a file, and a full disk or a permission
problem stops the run with one sentence naming the file, not a traceback.
"""

from __future__ import annotations

import json
import os
from typing import Any


class StorageError(RuntimeError):
    """A run could not write or read one of its files; the message says which, why, and what to do."""


def write_json_atomic(path: str, value: Any, *, what: str = "record") -> None:
    """Writes JSON to ``path`` through a temporary file renamed into place (atomic on POSIX)."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(value, f, indent=1)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise StorageError(
            f"could not write the {what} {path}: {e.strerror or e}; nothing after it was "
            "recorded. Free space or fix permissions there, then rerun the same command: it "
            "resumes from the last checkpoint."
        ) from e


def read_json(path: str) -> Any | None:
    """The JSON value in ``path``, or None when the file does not exist."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def safe_name(name: str) -> str:
    """``name`` with every character that is not alphanumeric or '-_.' replaced by '_'."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
