"""Metric sinks: one JSON line per logged step (metrics.jsonl) and TensorBoard event files.

Only process 0 writes. Vector metrics (per-task losses [T]) are logged per task name:
'task_loss/<task>' in TensorBoard, a {task: value} dict in the JSONL line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np


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
    """Appends metrics to <workdir>/metrics.jsonl and <workdir>/tensorboard/ (process 0 only)."""

    def __init__(self, workdir: str, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            from tensorboardX import (
                SummaryWriter,  # tensorboardX: heavy (protobuf), only on process 0 when metrics are written
            )

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: dict[str, Any], kind: str = "train") -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "kind": kind, **metrics}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in metrics.items():
            if isinstance(v, dict):
                for sub, x in v.items():
                    if isinstance(x, int | float):
                        self._tb.add_scalar(f"{kind}/{k}/{sub}", x, step)
            elif isinstance(v, int | float):
                self._tb.add_scalar(f"{kind}/{k}", v, step)
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: str) -> list[dict[str, Any]]:
    """All records of <workdir>/metrics.jsonl (empty if none)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
