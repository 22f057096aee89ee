"""Composing record sources for the four training settings; all deterministic by seed.

- Multi-task: ``weighted_mixture`` -> TaskSources with weights (the pipeline mixes them with Grain's
  ``MapDataset.mix``: an exact weighted interleave, each component reshuffled every epoch).
- Continual: ``task_stream`` -> an ordered list of stages, one per task; the runner makes one training
  iterator per stage (``make_train_iterator(..., sources=[stage.task_source])``).
- Lifelong: ``DataPool`` -> datasets added over time, addressed by global sample index, so a selector
  (e.g. Adapt-inf) can choose a subset (``pool.subset(indices)``); batches carry the global index in
  sample_index.
- Federated: ``partition_iid`` / ``partition_dirichlet`` -> per-client index sets that cover every sample
  exactly once; ``client_sources`` wraps them as TaskSources.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxlvlm.data.pipeline import TaskSource
from jaxlvlm.data.sources import RecordSource, SubsetSource, source_location


def weighted_mixture(
    sources: Sequence[RecordSource], weights: Sequence[float], task_ids: Sequence[int] | None = None
) -> list[TaskSource]:
    """One weighted TaskSource per source (task id = its position unless given)."""
    if len(sources) != len(weights):
        raise ValueError(f"{len(sources)} sources but {len(weights)} weights")
    if any(w <= 0 for w in weights):
        raise ValueError(f"mixture weights must be positive, got {list(weights)}")
    ids = list(task_ids) if task_ids is not None else list(range(len(sources)))
    return [TaskSource(s, t, float(w)) for s, t, w in zip(sources, ids, weights, strict=True)]


@dataclasses.dataclass(frozen=True)
class TaskStage:
    """One stage of a continual stream: its task name, id (= position) and source."""

    name: str
    task_id: int
    source: RecordSource

    @property
    def task_source(self) -> TaskSource:
        return TaskSource(self.source, self.task_id)


def task_stream(sources: Sequence[RecordSource], names: Sequence[str]) -> list[TaskStage]:
    """Ordered continual stages: stage t trains on task t only (task id t)."""
    if len(sources) != len(names):
        raise ValueError(f"{len(sources)} sources but {len(names)} task names")
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique, got {list(names)}")
    return [TaskStage(n, t, s) for t, (n, s) in enumerate(zip(names, sources, strict=True))]


class DataPool:
    """A growing pool of datasets addressed by a global sample index (lifelong learning).

    Global indices are assigned in order of addition and never change, so selections made earlier
    stay valid. The pool is itself a record source (``pool[g]``) with ``task_id_of(g)``.
    """

    def __init__(self):
        self._sources: list[RecordSource] = []
        self._task_ids: list[int] = []
        self._names: list[str] = []
        self._offsets: list[int] = [0]

    def add(self, source: RecordSource, task_id: int, name: str = "") -> range:
        """Adds a dataset; returns the global indices its samples got."""
        self._sources.append(source)
        self._task_ids.append(int(task_id))
        self._names.append(name or f"dataset{len(self._names)}")
        self._offsets.append(self._offsets[-1] + len(source))
        return range(self._offsets[-2], self._offsets[-1])

    def __len__(self) -> int:
        return self._offsets[-1]

    @property
    def num_datasets(self) -> int:
        return len(self._sources)

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"pool index {index} out of range [0, {len(self)})")
        d = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return d, index - self._offsets[d]

    def __getitem__(self, index: int) -> dict[str, Any]:
        d, local = self._locate(int(index))
        return self._sources[d][local]

    def task_id_of(self, index: int) -> int:
        return self._task_ids[self._locate(int(index))[0]]

    def dataset_of(self, index: int) -> str:
        return self._names[self._locate(int(index))[0]]

    def location(self, index: int) -> str:
        d, local = self._locate(int(index))
        return f"pool[{index}] = {source_location(self._sources[d], local)}"

    def indices_of(self, name: str) -> range:
        d = self._names.index(name)
        return range(self._offsets[d], self._offsets[d + 1])

    def subset(self, indices: Sequence[int] | np.ndarray) -> TaskSource:
        """A TaskSource over the selected global indices (task ids per sample from the pool)."""
        return TaskSource(SubsetSource(self, indices, name="pool"), None)


def partition_iid(num_samples: int, num_clients: int, seed: int) -> list[np.ndarray]:
    """Splits range(num_samples) into num_clients near-equal random parts (sorted index arrays)."""
    if num_clients <= 0 or num_samples < num_clients:
        raise ValueError(f"cannot split {num_samples} samples over {num_clients} clients")
    perm = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(part) for part in np.array_split(perm, num_clients)]


def partition_dirichlet(
    labels: Sequence[int] | np.ndarray,
    num_clients: int,
    alpha: float,
    seed: int,
    min_size: int = 1,
    max_tries: int = 100,
) -> list[np.ndarray]:
    """Non-IID label-skew partition: per label, client shares ~ Dirichlet(alpha * ones(num_clients)).

    Small alpha -> each client sees few labels; large alpha -> close to IID. Every sample goes to exactly
    one client. Draws are redone (same rng stream, so still deterministic) until each client has at
    least ``min_size`` samples.

    Args:
      labels: [num_samples] int label per sample (e.g. task id).
    Returns:
      num_clients sorted index arrays.
    """
    labels = np.asarray(labels)
    if alpha <= 0:
        raise ValueError(f"Dirichlet alpha must be positive, got {alpha}")
    if num_clients <= 0 or len(labels) < num_clients * min_size:
        raise ValueError(
            f"cannot give {num_clients} clients {min_size} of {len(labels)} samples each"
        )
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for label in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(np.int64)
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].append(chunk)
        out = [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]
        if min(len(p) for p in out) >= min_size:
            return out
    raise ValueError(
        f"no Dirichlet(alpha={alpha}) partition gave every one of {num_clients} clients >= {min_size} "
        f"samples in {max_tries} draws; raise alpha or lower min_size"
    )


def record_labels(source: RecordSource, task_names: Sequence[str]) -> np.ndarray:
    """[len(source)] task index of every record (reads every record once)."""
    names = list(task_names)
    return np.asarray([names.index(source[i]["task"]) for i in range(len(source))], np.int64)


def client_sources(
    source: RecordSource, partitions: Sequence[np.ndarray], task_id: int | None = None
) -> list[TaskSource]:
    """One TaskSource per client over its partition (sample_index = index in ``source``)."""
    return [
        TaskSource(SubsetSource(source, part, name=f"client{c}"), task_id)
        for c, part in enumerate(partitions)
    ]
