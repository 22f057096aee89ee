"""Evaluation: greedy generation over prompt batches, then each record's scorer, averaged per task.

Works across hosts: every process decodes its own rows (the inverse of how the pipeline placed them),
the predictions are gathered to all processes, and every process computes the same scores (caption
CIDEr-D needs the whole task as its corpus).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, PartitionSpec

from jaxlvlm.eval.generate import greedy_generate
from jaxlvlm.eval.scorers import score_batch
from jaxlvlm.multihost import allgather_json
from jaxlvlm.sharding import BATCH_AXES


@dataclasses.dataclass
class EvalResult:
    """scores: {task: mean score in [0, 1]}; counts: {task: scored samples}; predictions: one
    {'id', 'task', 'prediction', 'reference', 'scorer', 'score'} per valid sample (all processes)."""

    scores: dict[str, float]
    counts: dict[str, int]
    predictions: list[dict[str, Any]]

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.scores.values()))) if self.scores else 0.0


def decode_tokens(tokens: np.ndarray, tokenizer, eos_id: int | None) -> list[str]:
    """[B, T] generated ids -> B strings, cut at the first eos, special tokens dropped, stripped."""
    out = []
    for row in np.asarray(tokens):
        row = list(row)
        if eos_id is not None and eos_id in row:
            row = row[: row.index(eos_id)]
        out.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return out


def _local_rows(array: jax.Array, mesh: Mesh | None) -> np.ndarray:
    if mesh is None or jax.process_count() == 1:
        return np.asarray(jax.device_get(array))

    local = multihost_utils.global_array_to_host_local_array(array, mesh, PartitionSpec(BATCH_AXES))
    return np.asarray(local)


def score_predictions(rows: Sequence[dict[str, Any]]) -> tuple[dict[str, float], dict[str, int]]:
    """Per-task means of score_batch over rows with 'task', 'scorer', 'prediction', 'reference';
    each row gets its 'score' filled in. Tasks are scored one at a time (caption corpus = the task)."""
    tasks = sorted({r["task"] for r in rows})
    scores, counts = {}, {}
    for task in tasks:
        items = [r for r in rows if r["task"] == task]
        values = score_batch(
            [r["scorer"] for r in items],
            [r["prediction"] for r in items],
            [r["reference"] for r in items],
        )
        for r, v in zip(items, values, strict=True):
            r["score"] = float(v)
        scores[task] = float(np.mean(values))
        counts[task] = len(items)
    return scores, counts


def evaluate(
    generate_fn: Callable[[dict], jax.Array],
    eval_batches: Sequence[tuple[dict, dict]],
    tokenizer,
    *,
    eos_id: int | None,
    mesh: Mesh | None = None,
) -> EvalResult:
    """Runs ``generate_fn(batch) -> tokens [B, T]`` on each (batch, info) of
    jaxlvlm.data.pipeline.make_eval_batches and scores the valid rows per task."""
    rows: list[dict[str, Any]] = []
    for batch, info in eval_batches:
        tokens = _local_rows(generate_fn(batch), mesh)
        texts = decode_tokens(tokens, tokenizer, eos_id)
        for i, valid in enumerate(info["valid"]):
            if not valid:
                continue
            rows.append(
                {
                    "id": info["ids"][i],
                    "task": info["tasks"][i],
                    "prediction": texts[i],
                    "reference": info["references"][i],
                    "scorer": info["scorers"][i],
                }
            )
    everyone = [r for part in allgather_json(rows) for r in part]
    scores, counts = score_predictions(everyone)
    return EvalResult(scores=scores, counts=counts, predictions=everyone)


def make_generate_fn(
    model, max_new_tokens: int, eos_id: int, pad_id: int, lowrank_fn: Callable | None = None
) -> Callable[[Any, dict], jax.Array]:
    """(params, batch) -> tokens via jaxlvlm.eval.generate.greedy_generate (jitted inside, one
    compile per prompt shape); lowrank_fn(batch) gives the model's low-rank factors if any."""

    def generate(params, batch):
        lowrank = lowrank_fn(batch) if lowrank_fn is not None else None
        return greedy_generate(
            model, params, batch, max_new_tokens, eos_id=eos_id, pad_id=pad_id, lowrank=lowrank
        )

    return generate
