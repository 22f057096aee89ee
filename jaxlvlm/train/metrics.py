"""Metric sinks: one JSON line per logged step (metrics.jsonl) and TensorBoard event files.

Only process 0 writes. Vector metrics (per-task losses [T]) are logged per task name:
'task_loss/<task>' in TensorBoard, a {task: value} dict in the JSONL line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxlvlm.files import StagedDirectory, read_jsonl, run_path

METRICS_FILE = "metrics.jsonl"


def to_python(metrics: dict, task_names: Sequence[str] = ()) -> dict[str, Any]:
    """Device arrays -> floats, and [T] vectors -> {task_name: float}."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        arr = np.asarray(jax.device_get(v))
        if arr.ndim == 0:
            out[k] = arr.item()
        elif arr.ndim == 1 and len(task_names) == arr.shape[0]:
            out[k] = {t: float(x) for t, x in zip(task_names, arr, strict=True)}
        else:
            out[k] = arr.tolist()
    return out


class MetricsWriter:
    """Appends metrics to <workdir>/metrics.jsonl and <workdir>/tensorboard/ (process 0 only).

    Both files grow during a run, which object storage cannot do in place: they are written into a
    ``StagedDirectory`` (the workdir itself when local) and uploaded whole by ``sync`` (every
    ``sync_every_s`` seconds at a write, at each checkpoint through the loop, and at close). A run
    killed between syncs loses at most the lines logged after its last checkpoint, which the resumed
    run logs again.
    """

    def __init__(self, workdir: str, enabled: bool | None = None, sync_every_s: float = 30.0):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.sync_every_s = sync_every_s
        self._tb = None
        self._stage = None
        if self.enabled:
            # metrics.jsonl is fetched so a resumed run keeps appending to the same file; event
            # files are per writer (tensorboardX names them uniquely), so old ones stay untouched.
            self._stage = StagedDirectory(workdir, fetch=(METRICS_FILE,))
            self.path = self._stage.local / METRICS_FILE
            from tensorboardX import (
                SummaryWriter,  # tensorboardX: heavy (protobuf), only on process 0 when metrics are written
            )

            self._tb = SummaryWriter(os.fspath(self._stage.local / "tensorboard"))
            self._last_sync = time.monotonic()

    def write(self, step: int, metrics: dict[str, Any], kind: str = "train") -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "kind": kind, **metrics}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in metrics.items():
            if isinstance(v, dict):
                for sub, x in v.items():
                    if isinstance(x, int | float):
                        self._tb.add_scalar(f"{kind}/{k}/{sub}", x, step)
            elif isinstance(v, int | float):
                self._tb.add_scalar(f"{kind}/{k}", v, step)
        self._tb.flush()
        if time.monotonic() - self._last_sync >= self.sync_every_s:
            self.sync()

    def sync(self) -> None:
        """Uploads what changed to a remote workdir (nothing to do for a local one)."""
        if self._stage is not None:
            self._tb.flush()
            self._stage.sync()
            self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._stage.close()
            self._tb = None


def read_metrics(workdir: str) -> list[dict[str, Any]]:
    """All records of <workdir>/metrics.jsonl (empty if none)."""
    return read_jsonl(run_path(workdir) / METRICS_FILE)
