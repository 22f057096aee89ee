"""Pilot's server side: accept/reject client updates, the round schedule, aggregation, broadcast.

A bad client update (wrong tree, shapes or dtypes, or a non-finite value) is rejected with the
client and the offending leaf named; its slot is filled with that client's previous parameters and
marked invalid, so the round goes on without it and nothing else is lost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlvlm.methods.pilot.aggregation import adaptive_aggregate_with_weights, task_average

PyTree = Any


def round_schedule(num_rounds: int) -> list[tuple[int, str]]:
    """docs/methods.md section 4(d): round 1 runs stage 1 then stage 2, rounds 2..R stage 2 only.

    Returns [(round, stage), ...] with rounds counted from 1, each entry followed by aggregation.
    """
    if num_rounds < 1:
        raise ValueError(f"num_rounds must be >= 1, got {num_rounds}")
    return [(1, "stage1"), (1, "stage2")] + [(r, "stage2") for r in range(2, num_rounds + 1)]


def check_update(client: str, update: PyTree, reference: PyTree) -> str | None:
    """Why ``update`` is unacceptable (a sentence naming the client and the leaf), or None if fine.

    reference: a pytree with the expected structure, shapes and dtypes (arrays or ShapeDtypeStructs).
    """
    ref_paths = jax.tree_util.tree_flatten_with_path(reference)[0]
    try:
        got_paths, got_def = jax.tree_util.tree_flatten_with_path(update)
    except Exception as e:  # noqa: BLE001 - any unflattenable object is a bad update
        return f"client '{client}': update is not a parameter tree ({e})"
    if got_def != jax.tree_util.tree_structure(reference):
        missing = sorted(
            {jax.tree_util.keystr(p) for p, _ in ref_paths}
            - {jax.tree_util.keystr(p) for p, _ in got_paths}
        )
        extra = sorted(
            {jax.tree_util.keystr(p) for p, _ in got_paths}
            - {jax.tree_util.keystr(p) for p, _ in ref_paths}
        )
        return f"client '{client}': parameter tree differs (missing {missing}, unexpected {extra})"
    for (path, want), (_, got) in zip(ref_paths, got_paths, strict=True):
        name = jax.tree_util.keystr(path)
        shape = tuple(getattr(got, "shape", ()))
        if shape != tuple(want.shape):
            return f"client '{client}': {name} has shape {shape}, expected {tuple(want.shape)}"
        got_dtype = got.dtype if hasattr(got, "dtype") else np.asarray(got).dtype
        if jnp.dtype(got_dtype) != jnp.dtype(want.dtype):
            return (
                f"client '{client}': {name} has dtype {got_dtype}, expected {jnp.dtype(want.dtype)}"
            )
        bad = int(jnp.size(got) - jnp.sum(jnp.isfinite(jnp.asarray(got))))
        if bad:
            return f"client '{client}': {name} has {bad} non-finite values (NaN/inf)"
    return None


@dataclasses.dataclass
class CollectedUpdates:
    """Accepted updates stacked on a client axis; rejected slots hold the client's previous values."""

    stacked: PyTree  # leaves [K, ...]
    valid: np.ndarray  # [K] bool
    rejected: list[tuple[str, str]]  # (client, reason)


def collect_updates(
    clients: Sequence[str], updates: Sequence[PyTree], previous: Sequence[PyTree]
) -> CollectedUpdates:
    """Checks every client's update against its previous parameters and stacks the result.

    clients [K] names, updates [K] pytrees (what came back), previous [K] pytrees (what each
    client had at the start of the round; also the expected structure).
    """
    if not (len(clients) == len(updates) == len(previous)):
        raise ValueError("collect_updates: clients, updates and previous must have the same length")
    chosen, valid, rejected = [], [], []
    for name, upd, prev in zip(clients, updates, previous, strict=True):
        reason = check_update(name, upd, prev)
        if reason is None:
            chosen.append(upd)
            valid.append(True)
        else:
            chosen.append(prev)
            valid.append(False)
            rejected.append((name, reason))
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *chosen)
    return CollectedUpdates(stacked=stacked, valid=np.asarray(valid, bool), rejected=rejected)


def unstack(stacked: PyTree, num_clients: int) -> list[PyTree]:
    """Leaves [K, ...] -> K pytrees (the server's per-client messages)."""
    return [jax.tree_util.tree_map(lambda x, i=i: x[i], stacked) for i in range(num_clients)]


def pilot_aggregate(
    task_adapters: PyTree,
    lora: PyTree,
    task: jax.Array,
    num_examples: jax.Array,
    valid: jax.Array,
    num_tasks: int,
    num_neighbours: int,
    previous_task_adapters: PyTree | None = None,
) -> tuple[PyTree, PyTree, jax.Array]:
    """The Pilot server after a stage: task-aware averaging of ψ_t and ATA (eq. 16) of the LoRA.

    task_adapters / lora: leaves [K, ...] (finite; see collect_updates); task [K]; num_examples [K];
    valid [K] -> (task averages, leaves [T, ...]; personalised LoRA, leaves [K, ...]; ATA's mixing
    matrix W [K, K] that made them, W[k, j] = the weight of client j's LoRA in client k's).
    """
    averages = task_average(
        task_adapters, task, num_examples, valid, num_tasks, previous_task_adapters
    )
    lora, w = adaptive_aggregate_with_weights(lora, num_examples, valid, num_neighbours)
    return averages, lora, w


def other_task_index(own_task: jax.Array | int, num_tasks: int) -> jax.Array:
    """Task ids of the T-1 other tasks in ascending order (index arithmetic, vmappable): [T-1]."""
    idx = jnp.arange(num_tasks - 1)
    return idx + (idx >= own_task)


def stage2_connector_params(
    task_averages: PyTree,
    own_task: jax.Array | int,
    num_tasks: int,
    client_adapter: PyTree,
    cross_adapters: PyTree,
    router: PyTree,
) -> dict[str, PyTree]:
    """Parameters of a client's ``pilot_ctmoa`` connector from what the server broadcast.

    task_averages: leaves [T, ...] (server's ψ_t per task); own_task: this client's task id;
    client_adapter: its ψ_s; cross_adapters (leaves [T-1, ...]) and router: its own stage-2 state
    (fresh from init in round 1). The own task's average goes to slot 0 ('own_task_adapter'), the
    others in ascending task order to 'other_task_adapters'.
    """
    own = jax.tree_util.tree_map(lambda x: x[own_task], task_averages)
    others_idx = other_task_index(own_task, num_tasks)
    others = jax.tree_util.tree_map(lambda x: x[others_idx], task_averages)
    return {
        "own_task_adapter": own,
        "other_task_adapters": others,
        "cross_adapters": cross_adapters,
        "client_adapter": client_adapter,
        "router": router,
    }
