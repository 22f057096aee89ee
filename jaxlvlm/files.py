"""Run files on local disk or object storage (gs://, s3://, ...): one path type, atomic writes, and a
clear error when storage fails.

Every path a run writes or reads (checkpoints, records, metrics, reports, converted checkpoints,
TFDS data directories, tokenizers) is an ``etils.epath.Path``, the path type orbax, TensorStore's
callers and TFDS use: local paths go to the OS, ``gs://`` to gcsfs (through fsspec; with TensorFlow
installed etils picks ``tf.io.gfile`` instead). ``run_path`` is the one place a user's string becomes
such a path.

Atomicity: a local file is written under a temporary name and renamed into place (atomic on POSIX).
On object storage a rename is a copy plus a delete, not atomic, but a single object upload is: the
object becomes visible only when its upload is finalised, whole. So remote files are written in one
call with their whole content (``write_bytes_atomic``), never appended to nor renamed. Files that
grow while a run goes (metrics.jsonl, TensorBoard events) live in a local ``StagedDirectory`` and
are uploaded whole at each sync.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from etils import epath

PathLike = str | os.PathLike


class StorageError(RuntimeError):
    """A run could not write or read one of its files; the message says which, why, and what to do."""


def is_remote(path: PathLike) -> bool:
    """True for a URL with a scheme (gs://bucket/..., s3://...), False for a local path."""
    return "://" in os.fspath(path)


def run_path(path: PathLike) -> epath.Path:
    """The ``epath.Path`` of a user's path: a URL kept as it is, a local path made absolute (orbax
    refuses relative directories)."""
    p = epath.Path(path)
    return p if is_remote(p) else p.resolve()


def makedirs(path: PathLike) -> epath.Path:
    """Creates the directory ``path`` (and its parents) if missing; returns it as a run path.

    On object storage directories are implicit (a name prefix), so this writes nothing there.
    """
    p = run_path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _storage_error("directory", p, e) from e
    return p


def _storage_error(what: str, path: PathLike, e: BaseException) -> StorageError:
    why = getattr(e, "strerror", None) or (str(e).strip().splitlines() or [type(e).__name__])[0]
    return StorageError(
        f"could not write the {what} {os.fspath(path)}: {why}; nothing after it was recorded. "
        "Free space, fix permissions or credentials there, then rerun the same command: it resumes "
        "from the last checkpoint."
    )


def write_bytes_atomic(path: PathLike, data: bytes, *, what: str = "file") -> None:
    """Writes ``data`` to ``path`` so that a reader sees the old file or the new one, never half.

    Local: a temporary file in the same directory, renamed into place. Object storage: one object
    upload of the whole content (an upload becomes visible only when finalised, whole).
    """
    p = run_path(path)
    tmp = p.parent / (p.name + ".tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if is_remote(p):
            p.write_bytes(data)
            return
        tmp.write_bytes(data)
        tmp.replace(p)
    except Exception as e:  # noqa: BLE001 - OSError locally; gcsfs raises its own HTTP errors
        if not is_remote(p):
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise _storage_error(what, p, e) from e


def write_text_atomic(path: PathLike, text: str, *, what: str = "file") -> None:
    """``write_bytes_atomic`` of ``text`` encoded as UTF-8."""
    write_bytes_atomic(path, text.encode("utf-8"), what=what)


def write_json_atomic(path: PathLike, value: Any, *, what: str = "record") -> None:
    """Writes ``value`` as indented JSON to ``path`` atomically (see ``write_bytes_atomic``)."""
    write_text_atomic(path, json.dumps(value, indent=1), what=what)


def write_jsonl_atomic(path: PathLike, rows: list[dict], *, what: str = "file") -> None:
    """Writes one JSON line per row to ``path`` atomically (see ``write_bytes_atomic``)."""
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows), what=what)


def read_json(path: PathLike) -> Any | None:
    """The JSON value in ``path``, or None when the file does not exist."""
    p = run_path(path)
    if not p.exists():
        return None
    return json.loads(p.read_text())


def read_jsonl(path: PathLike) -> list[dict]:
    """The records of a JSON-lines file (empty when it does not exist)."""
    p = run_path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def files_under(root: PathLike) -> list[str]:
    """The relative POSIX paths of every file under the directory ``root``, sorted.

    Listed directory by directory: epath refuses recursive globs on gs://, and its walk() drops
    the URL scheme from the roots it yields.
    """
    out: list[str] = []
    stack = [(run_path(root), "")]
    while stack:
        directory, prefix = stack.pop()
        for child in directory.iterdir():
            rel = prefix + child.name
            if child.is_dir():
                stack.append((child, rel + "/"))
            else:
                out.append(rel)
    return sorted(out)


def copy_tree(src: PathLike, dst: PathLike, last: str = "") -> list[str]:
    """Copies every file under ``src`` to the same relative path under ``dst`` (either side local
    or remote; each file is one object write). Files named ``last`` are copied after all others (a
    marker that says the rest is complete). Returns the relative paths in copy order."""
    src_p, dst_p = run_path(src), run_path(dst)
    copied = sorted(files_under(src_p), key=lambda rel: rel.rsplit("/", 1)[-1] == last)
    for rel in copied:
        target = dst_p / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            (src_p / rel).copy(target, overwrite=True)
        except Exception as e:  # noqa: BLE001 - OSError locally; gcsfs raises its own HTTP errors
            raise _storage_error("copy of", target, e) from e
    return copied


def move_tree(src: PathLike, dst: PathLike) -> None:
    """Moves the directory ``src`` to ``dst``: a rename on local disk; a copy of every object then
    a delete on object storage (which has no directory rename)."""
    src_p, dst_p = run_path(src), run_path(dst)
    if not (is_remote(src_p) or is_remote(dst_p)):
        dst_p.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(os.fspath(src_p), os.fspath(dst_p))
        return
    copy_tree(src_p, dst_p)
    src_p.rmtree()


@contextlib.contextmanager
def local_copy(path: PathLike, recursive: bool = True) -> Iterator[str]:
    """A local filesystem path holding ``path``'s content, for readers that only take local files
    (safetensors, tokenizers, GGUF). A local path is yielded as it is; a remote file or directory is
    downloaded into a temporary directory removed on exit (``recursive=False``: only the files
    directly in the directory, e.g. a tokenizer's next to a checkpoint's large subdirectories)."""
    p = run_path(path)
    if not is_remote(p):
        yield os.fspath(p)
        return
    if not p.exists():
        raise FileNotFoundError(f"{os.fspath(p)} does not exist")
    with tempfile.TemporaryDirectory(prefix="jaxlvlm-fetch-") as tmp:
        local = epath.Path(tmp) / p.name
        if p.is_dir() and recursive:
            copy_tree(p, local)
        elif p.is_dir():
            local.mkdir()
            for f in p.iterdir():
                if not f.is_dir():
                    f.copy(local / f.name)
        else:
            p.copy(local)
        yield os.fspath(local)


CACHE_ENV = "JAXLVLM_CACHE_DIR"
_COMPLETE = ".complete"


def cached_copy(path: PathLike) -> str:
    """A local copy of the remote directory ``path``, downloaded once into the cache
    ($JAXLVLM_CACHE_DIR, else ~/.cache/jaxlvlm) and reused while complete; a local path is returned
    as it is. For readers that need local random access to large files (array_record datasets).

    The copy is made under a name of this process's own and renamed into place with a marker file
    in it, so processes sharing a cache (the hosts' processes on one machine) never read a half
    copy; a copy without the marker (an older interrupted one) is replaced.
    """
    p = run_path(path)
    if not is_remote(p):
        return os.fspath(p)
    root = epath.Path(os.environ.get(CACHE_ENV) or epath.Path("~/.cache/jaxlvlm").expanduser())
    digest = hashlib.sha256(os.fspath(p).encode()).hexdigest()[:16]
    local = root / "remote" / f"{digest}-{safe_name(p.name)}"
    if (local / _COMPLETE).exists():
        return os.fspath(local)
    partial = local.parent / f"{local.name}.partial-{os.getpid()}"
    if partial.exists():
        partial.rmtree()
    copy_tree(p, partial)
    (partial / _COMPLETE).write_text(os.fspath(p))
    if local.exists() and not (local / _COMPLETE).exists():
        local.rmtree(missing_ok=True)
    try:
        os.rename(partial, local)
    except OSError:  # another process put its complete copy in place first: use that one
        partial.rmtree(missing_ok=True)
    return os.fspath(local)


@contextlib.contextmanager
def local_output_dir(path: PathLike, last: str = "") -> Iterator[str]:
    """A local directory to write ``path``'s content into, for writers that only take local
    directories (transformers' save_pretrained, safetensors, array_record): ``path`` itself when
    local (created), else a temporary directory whose files are copied to ``path`` when the block
    ends without error (files named ``last`` copied last, see ``copy_tree``)."""
    p = run_path(path)
    if not is_remote(p):
        p.mkdir(parents=True, exist_ok=True)
        yield os.fspath(p)
        return
    with tempfile.TemporaryDirectory(prefix="jaxlvlm-out-") as tmp:
        yield tmp
        copy_tree(tmp, p, last=last)


class StagedDirectory:
    """A local directory standing in for a run directory, for files that grow (appended logs,
    TensorBoard events), which object storage cannot append to.

    For a local run directory the stage is the directory itself and ``sync`` does nothing. For a
    remote one the stage is a temporary local directory: ``fetch`` names files to download at start
    (to keep appending to them across a resume), and ``sync`` uploads each file whose size or
    modification time changed since the last sync, whole, as one object write.
    """

    def __init__(self, target: PathLike, fetch: tuple[str, ...] = ()):
        self.target = run_path(target)
        self.remote = is_remote(self.target)
        self._synced: dict[str, tuple[int, int]] = {}
        if not self.remote:
            makedirs(self.target)
            self.local = self.target
            return
        self.local = epath.Path(tempfile.mkdtemp(prefix="jaxlvlm-stage-"))
        for name in fetch:
            src = self.target / name
            if src.exists():
                (self.local / name).parent.mkdir(parents=True, exist_ok=True)
                src.copy(self.local / name)
                self._synced[name] = self._signature(self.local / name)

    @staticmethod
    def _signature(p: epath.Path) -> tuple[int, int]:
        st = os.stat(p)
        return st.st_size, st.st_mtime_ns

    def sync(self) -> list[str]:
        """Uploads the files changed since the last sync (remote target only); returns their
        relative paths."""
        if not self.remote:
            return []
        sent = []
        for rel in files_under(self.local):
            f = self.local / rel
            sig = self._signature(f)
            if self._synced.get(rel) == sig:
                continue
            write_bytes_atomic(self.target / rel, f.read_bytes(), what="log file")
            self._synced[rel] = sig
            sent.append(rel)
        return sent

    def close(self) -> None:
        """Syncs, then removes the temporary stage (remote target only)."""
        if not self.remote:
            return
        try:
            self.sync()
        finally:
            shutil.rmtree(self.local, ignore_errors=True)


def safe_name(name: str) -> str:
    """``name`` with every character that is not alphanumeric or '-_.' replaced by '_'."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
