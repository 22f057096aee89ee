"""The data pipeline's public entry: sources -> Grain -> sharded global batches, with resumable state.

For the trainer::

    data_cfg = DataConfig.from_dict(config.data)            # plain values, see DataConfig
    image_cfg = ImageConfig.from_lvlm_config(model_config)   # image size, tokens per image, id, style
    tokenizer = load_tokenizer(config.tokenizer)            # 'builtin', a tokenizer dir or a .gguf file
    it = make_train_iterator(data_cfg, tokenizer, image_cfg, mesh, seed)
    batch = next(it)          # dict of global jax.Arrays, layout of jaxlvlm/data/batch.py
    state = it.get_state()    # JSON-able dict: save with the checkpoint; it.set_state(state) resumes
    it.bad_sample_summary()   # {'skipped_total', 'skipped_by_reason', 'examples'}: log it
    for batch, info in make_eval_batches(data_cfg, tokenizer, image_cfg, mesh): ...
        # batch: prompts (generation prompt appended), fixed shapes, padding rows (info['valid'] False);
        # info: this process's rows: 'ids', 'references', 'scorers', 'tasks', 'task_ids', 'valid'.

Runners that compose data themselves (continual streams, pools, client partitions) pass
``sources=[TaskSource(source, task_id, weight), ...]`` instead of ``data_cfg.sources``.

Per process: the indices of every source are split ``[process_index::process_count]`` (disjoint and
covering), shuffled by seed (a new permutation per epoch), read, validated, tokenised and preprocessed in
Grain's map; bad samples come back as markers and go to the BadSamplePolicy here, in the main process.
Each batch takes the smallest bucket that holds its longest row; with several processes they agree on
the bucket (and on whether any data is left) through one tiny allgather per batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import grain
import jax
import numpy as np
from jax.sharding import Mesh
from transformers import PreTrainedTokenizerBase

from jaxlvlm.data.bad_samples import BadSample, BadSamplePolicy
from jaxlvlm.data.collate import choose_bucket, collate
from jaxlvlm.data.examples import (
    ImageConfig,
    bad_marker,
    marker_to_error,
    prepare_eval_example,
    prepare_train_example,
)
from jaxlvlm.data.global_batch import agree_max, to_global_batch
from jaxlvlm.data.sources import RecordSource, source_from_spec, source_location
from jaxlvlm.data.tokenizer import pad_token_id
from jaxlvlm.sharding import BATCH_AXES

__all__ = [
    "DataConfig",
    "ImageConfig",
    "TaskSource",
    "TrainIterator",
    "make_train_iterator",
    "make_eval_batches",
    "sources_from_config",
]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Plain values that describe the data of a run.

    sources / eval_sources: source specs (dicts), see jaxlvlm.data.sources.source_from_spec:
      {'type': 'builtin', 'family', 'split', 'num', 'domain'?, 'seed'?, 'wording'?},
      {'type': 'tfds', 'data_dir', 'name', 'split'}, {'type': 'llava_json', 'path', 'image_root'};
      each may carry 'task' (its task name) and 'weight' (mixture weight).
    tasks: task names; a sample's task id is the index of its record's 'task' here. Empty: the task id
      is the position of its source spec (of its 'task' name among the specs' names when given).
    global_batch_size / eval_batch_size: rows per global batch (split evenly over processes).
    buckets: the padded sequence lengths; a batch takes the smallest that holds its longest row;
      longer samples are truncated to the largest (never cutting image tokens).
    max_images: image slots N per sample in pixel_values [B, N, H, W, 3].
    num_epochs: None = repeat forever (training); an int ends the iterator after that many epochs.
      With weights on the sources (a mixture) it must be None.
    on_bad_sample / max_bad_samples: the bad-sample policy (jaxlvlm/data/bad_samples.py).
    read_threads / prefetch / worker_count: Grain read threads, prefetch buffer, worker processes
      (worker_count > 0 needs absl flags parsed, i.e. run under absl.app).
    """

    sources: tuple[dict[str, Any], ...] = ()
    eval_sources: tuple[dict[str, Any], ...] = ()
    tasks: tuple[str, ...] = ()
    global_batch_size: int = 8
    eval_batch_size: int = 8
    buckets: tuple[int, ...] = (64, 128, 256)
    max_images: int = 1
    shuffle: bool = True
    num_epochs: int | None = None
    on_bad_sample: str = "error"
    max_bad_samples: int = 100
    read_threads: int = 2
    prefetch: int = 32
    worker_count: int = 0

    def __post_init__(self):
        if not self.buckets or any(int(b) <= 1 for b in self.buckets):
            raise ValueError(f"data.buckets must be lengths > 1, got {self.buckets}")
        if self.global_batch_size <= 0 or self.eval_batch_size <= 0:
            raise ValueError("data.global_batch_size and data.eval_batch_size must be positive")
        if self.max_images < 0:
            raise ValueError("data.max_images must be >= 0")
        BadSamplePolicy(self.on_bad_sample, self.max_bad_samples)  # validates both

    @classmethod
    def from_dict(cls, d: Any) -> DataConfig:
        """From a plain dict or ml_collections ConfigDict; unknown keys are an error naming them."""
        d = dict(d.to_dict() if hasattr(d, "to_dict") else d)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise KeyError(f"data config: unknown keys {unknown}; known keys are {sorted(names)}")
        for key in ("sources", "eval_sources"):
            if key in d:
                d[key] = tuple(dict(s.to_dict() if hasattr(s, "to_dict") else s) for s in d[key])
        for key in ("tasks", "buckets"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    @property
    def max_length(self) -> int:
        return max(self.buckets)


@dataclasses.dataclass
class TaskSource:
    """A record source with its task id (None: look each record's 'task' up in the task names) and
    an optional mixture weight."""

    source: RecordSource
    task_id: int | None = None
    weight: float | None = None


def sources_from_config(
    specs: Sequence[dict[str, Any]], tasks: Sequence[str], seed: int, image_size: int
) -> list[TaskSource]:
    """Builds TaskSources from specs (see DataConfig.sources) and resolves their task ids."""
    out = []
    spec_names = [s.get("task") for s in specs]
    for position, spec in enumerate(specs):
        source = source_from_spec(spec, seed=seed, image_size=image_size)
        if tasks:
            task_id = None
        elif all(spec_names):
            # Several specs may share a task name; ids follow first appearance.
            task_id = list(dict.fromkeys(spec_names)).index(spec["task"])
        else:
            task_id = position
        out.append(TaskSource(source, task_id, spec.get("weight")))
    return out


def _process_info(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    if not 0 <= pi < pc:
        raise ValueError(f"process_index {pi} not in [0, {pc})")
    return pi, pc


def _local_batch_size(global_batch: int, process_count: int, mesh: Mesh | None) -> int:
    if mesh is not None and process_count != jax.process_count():
        raise ValueError(
            f"process_count={process_count} differs from jax.process_count()={jax.process_count()}; "
            "simulated processes only work with mesh=None (host batches)"
        )
    if global_batch % process_count:
        raise ValueError(
            f"global batch {global_batch} is not divisible by {process_count} processes"
        )
    if mesh is not None:
        shards = int(np.prod([mesh.shape[a] for a in BATCH_AXES]))
        if global_batch % shards:
            raise ValueError(
                f"global batch {global_batch} is not divisible by the {shards} batch shards of the mesh "
                f"({dict(mesh.shape)}); choose a multiple"
            )
    return global_batch // process_count


def _derive_seed(seed: int, k: int) -> int:
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


class _Prepare:
    """Grain map: source index -> prepared example (or bad marker). A class so it pickles to workers."""

    def __init__(
        self,
        task_source: TaskSource,
        task_names,
        tokenizer,
        image_cfg,
        max_length,
        max_images,
        eval_mode,
    ):
        self.task_source = task_source
        self.task_names = tuple(task_names)
        self.tokenizer = tokenizer
        self.image_cfg = image_cfg
        self.max_length = max_length
        self.max_images = max_images
        self.eval_mode = eval_mode

    def __call__(self, index: int) -> dict[str, Any]:
        source = self.task_source.source
        index = int(index)
        location = source_location(source, index)
        sample_index = source.parent_index(index) if hasattr(source, "parent_index") else index
        task_id = self.task_source.task_id
        if task_id is None and hasattr(source, "task_id_of"):
            task_id = source.task_id_of(index)
        prepare = prepare_eval_example if self.eval_mode else prepare_train_example
        kwargs = dict(
            tokenizer=self.tokenizer,
            image_cfg=self.image_cfg,
            max_length=self.max_length,
            max_images=self.max_images,
            sample_index=sample_index,
            task_id=task_id,
            task_names=self.task_names,
            location=location,
        )
        try:
            raw = source[index]
        except BadSample as e:  # e.g. a LLaVA entry whose image is missing: the policy decides
            return bad_marker(e.with_location(location))
        return prepare(raw, **kwargs)


class _PickConcat:
    """Grain map over a concatenation: joint position j -> (source s, its local index) -> example."""

    def __init__(
        self, offsets: np.ndarray, prepares: list[_Prepare], local_indices: list[np.ndarray]
    ):
        self.offsets = offsets
        self.prepares = prepares
        self.local_indices = local_indices

    def __call__(self, j: int) -> dict[str, Any]:
        s = int(np.searchsorted(self.offsets, j, side="right") - 1)
        return self.prepares[s](self.local_indices[s][j - self.offsets[s]])


def build_train_dataset(
    task_sources: Sequence[TaskSource],
    data_cfg: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    image_cfg: ImageConfig,
    seed: int,
    process_index: int,
    process_count: int,
) -> grain.IterDataset:
    """The Grain dataset of prepared examples (or bad markers) for this process."""
    if not task_sources:
        raise ValueError("no data sources: set data.sources or pass sources=")
    weights = [ts.weight for ts in task_sources]
    mixing = any(w is not None for w in weights)
    if mixing and (any(w is None for w in weights) or data_cfg.num_epochs is not None):
        raise ValueError(
            "a weighted mixture needs a 'weight' on every source and data.num_epochs=None "
            f"(got weights {weights}, num_epochs {data_cfg.num_epochs})"
        )
    per_source = []
    for k, ts in enumerate(task_sources):
        if len(ts.source) < process_count:
            raise ValueError(
                f"source {getattr(ts.source, 'name', k)} has {len(ts.source)} samples, fewer than "
                f"{process_count} processes"
            )
        ds = grain.MapDataset.range(len(ts.source))[process_index::process_count]
        prepare = _Prepare(
            ts,
            data_cfg.tasks,
            tokenizer,
            image_cfg,
            data_cfg.max_length,
            data_cfg.max_images,
            False,
        )
        per_source.append((ds, prepare))
    if mixing:
        parts = []
        for k, (ds, prepare) in enumerate(per_source):
            if data_cfg.shuffle:
                ds = ds.shuffle(seed=_derive_seed(seed, k))
            parts.append(ds.repeat(None).map(prepare))
        ds = grain.MapDataset.mix(parts, weights=[float(w) for w in weights])
    else:
        # Concatenation: position j of the joint range -> (source, index) through offsets.
        lengths = [len(ds) for ds, _ in per_source]
        offsets = np.cumsum([0, *lengths])
        pick = _PickConcat(
            offsets,
            [p for _, p in per_source],
            [np.asarray(list(ds), np.int64) for ds, _ in per_source],
        )
        ds = grain.MapDataset.range(int(offsets[-1]))
        if data_cfg.shuffle:
            ds = ds.shuffle(seed=_derive_seed(seed, len(per_source)))
        ds = ds.repeat(data_cfg.num_epochs).map(pick)
    read = grain.ReadOptions(
        num_threads=max(data_cfg.read_threads, 0), prefetch_buffer_size=max(data_cfg.prefetch, 0)
    )
    it_ds = ds.to_iter_dataset(read)
    if data_cfg.worker_count > 0:
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=data_cfg.worker_count))
    return it_ds


class TrainIterator:
    """Yields training batches; ``get_state``/``set_state`` (JSON-able) resume exactly mid-epoch.

    __next__ -> dict of global jax.Arrays (or numpy arrays when mesh is None) with the keys of
    jaxlvlm/data/batch.py; raises StopIteration after data_cfg.num_epochs epochs (never when None).
    """

    def __init__(
        self,
        dataset: grain.IterDataset,
        data_cfg: DataConfig,
        image_cfg: ImageConfig,
        pad_id: int,
        mesh: Mesh | None,
        local_batch_size: int,
        process_count: int,
    ):
        self._dataset = dataset
        self._iterator = iter(dataset)
        self._data_cfg = data_cfg
        self._image_cfg = image_cfg
        self._pad_id = pad_id
        self._mesh = mesh
        self._local_batch_size = local_batch_size
        self._process_count = process_count
        self._buckets = tuple(sorted(data_cfg.buckets))
        self.policy = BadSamplePolicy(data_cfg.on_bad_sample, data_cfg.max_bad_samples)
        self._batches = 0

    def __iter__(self) -> TrainIterator:
        return self

    def _next_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while len(rows) < self._local_batch_size:
            try:
                element = next(self._iterator)
            except StopIteration:
                break
            if "bad" in element:
                self.policy.handle(marker_to_error(element))
                continue
            rows.append(element)
        return rows

    def next_host_batch(self) -> dict[str, np.ndarray]:
        """This process's rows of the next batch as numpy arrays [local_batch, ...]."""
        rows = self._next_rows()
        local_bucket = choose_bucket(max(r["length"] for r in rows), self._buckets) if rows else 0
        bucket, any_rows = agree_max(np.asarray([local_bucket, len(rows)]))
        if any_rows == 0:
            raise StopIteration
        self._batches += 1
        return collate(
            rows,
            self._local_batch_size,
            self._buckets[int(bucket)],
            self._data_cfg.max_images,
            self._image_cfg.image_size,
            self._pad_id,
        )

    def __next__(self) -> dict[str, Any]:
        local = self.next_host_batch()
        if self._mesh is None:
            return local
        return to_global_batch(local, self._mesh, self._process_count)

    def get_state(self) -> dict[str, Any]:
        """JSON-able: the Grain iterator position, the bad-sample counters, the batch count."""
        return {
            "grain": self._iterator.get_state(),
            "bad_samples": self.policy.get_state(),
            "batches": self._batches,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._iterator.set_state(state["grain"])
        self.policy.set_state(state.get("bad_samples", {}))
        self._batches = int(state.get("batches", 0))

    def bad_sample_summary(self) -> dict[str, Any]:
        return self.policy.summary()


def make_train_iterator(
    data_cfg: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    image_cfg: ImageConfig,
    mesh: Mesh | None,
    seed: int,
    sources: Sequence[TaskSource] | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> TrainIterator:
    """The training iterator of this process (see the module docstring).

    Args:
      mesh: batches become global arrays sharded over ('data', 'fsdp'); None -> host numpy batches.
      seed: shuffle seed (and the default seed of built-in sources).
      sources: overrides data_cfg.sources (runners that compose data themselves).
      process_index / process_count: default to jax's; override to simulate hosts in tests.
    """
    pi, pc = _process_info(process_index, process_count)
    if sources is None:
        sources = sources_from_config(data_cfg.sources, data_cfg.tasks, seed, image_cfg.image_size)
    local_bs = _local_batch_size(data_cfg.global_batch_size, pc, mesh)
    dataset = build_train_dataset(sources, data_cfg, tokenizer, image_cfg, seed, pi, pc)
    return TrainIterator(dataset, data_cfg, image_cfg, pad_token_id(tokenizer), mesh, local_bs, pc)


def make_eval_batches(
    data_cfg: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    image_cfg: ImageConfig,
    mesh: Mesh | None,
    sources: Sequence[TaskSource] | None = None,
    seed: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    policy: BadSamplePolicy | None = None,
) -> list[tuple[dict[str, Any], dict[str, list]]]:
    """Prompt batches for generation, in source order, with host-side references.

    Each batch has the keys of jaxlvlm/data/batch.py (targets and loss_mask all zero), eval_batch_size
    global rows, fixed shapes (one bucket per batch), padding rows at the end. Every process returns
    the same number of batches. info (this process's rows): 'ids', 'references', 'scorers', 'tasks',
    'task_ids', 'sample_index', 'valid' (False for padding rows), 'prompt_lengths'.
    Bad samples go to ``policy`` (default: one from data_cfg); its summary says what was skipped.
    """
    pi, pc = _process_info(process_index, process_count)
    if sources is None:
        specs = data_cfg.eval_sources or data_cfg.sources
        sources = sources_from_config(specs, data_cfg.tasks, seed, image_cfg.image_size)
    policy = (
        policy
        if policy is not None
        else BadSamplePolicy(data_cfg.on_bad_sample, data_cfg.max_bad_samples)
    )
    local_bs = _local_batch_size(data_cfg.eval_batch_size, pc, mesh)
    buckets = tuple(sorted(data_cfg.buckets))
    pad_id = pad_token_id(tokenizer)
    examples = []
    longest_shard = 0
    for ts in sources:
        prepare = _Prepare(
            ts, data_cfg.tasks, tokenizer, image_cfg, data_cfg.max_length, data_cfg.max_images, True
        )
        indices = range(pi, len(ts.source), pc)
        longest_shard += math.ceil(len(ts.source) / pc)
        for i in indices:
            element = prepare(i)
            if "bad" in element:
                policy.handle(marker_to_error(element))
                continue
            examples.append(element)
    # Every process makes the same number of batches: enough for the largest shard (bad samples only
    # shorten a shard, so the tail is padding).
    num_batches = math.ceil(longest_shard / local_bs)
    out = []
    for b in range(num_batches):
        rows = examples[b * local_bs : (b + 1) * local_bs]
        local_bucket = choose_bucket(max(r["length"] for r in rows), buckets) if rows else 0
        (bucket,) = agree_max(np.asarray([local_bucket]))
        local = collate(
            rows, local_bs, buckets[int(bucket)], data_cfg.max_images, image_cfg.image_size, pad_id
        )
        pad = local_bs - len(rows)
        info = {
            "ids": [r["id"] for r in rows] + [""] * pad,
            "references": [r["reference"] for r in rows] + [""] * pad,
            "scorers": [r["scorer"] for r in rows] + [""] * pad,
            "tasks": [r["task"] for r in rows] + [""] * pad,
            "task_ids": [int(r["task_id"]) for r in rows] + [-1] * pad,
            "sample_index": [int(r["sample_index"]) for r in rows] + [-1] * pad,
            "valid": [True] * len(rows) + [False] * pad,
            "prompt_lengths": [int(r["length"]) for r in rows] + [0] * pad,
        }
        batch = local if mesh is None else to_global_batch(local, mesh, pc)
        out.append((batch, info))
    return out
