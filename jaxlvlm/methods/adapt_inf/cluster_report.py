"""What a lifelong report shows about a step's clusters: sizes and the task x cluster counts."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.jit, static_argnames=("num_tasks", "num_clusters"))
def task_cluster_counts(
    task_ids: jax.Array, labels: jax.Array, valid: jax.Array, num_tasks: int, num_clusters: int
) -> jax.Array:
    """How many valid pool rows of each task fall in each cluster.

    task_ids [n] int in [0, T), labels [n] int in [0, K), valid [n] bool -> counts [T, K] int32.
    Column sums are the cluster sizes, row sums the task's rows in the pool; a collapse shows as
    one non-zero column.
    """
    flat = task_ids.astype(jnp.int32) * num_clusters + labels.astype(jnp.int32)
    counts = jnp.zeros((num_tasks * num_clusters,), jnp.int32).at[flat].add(valid.astype(jnp.int32))
    return counts.reshape(num_tasks, num_clusters)


def format_task_cluster_table(counts, task_names: list[str]) -> list[str]:
    """Markdown lines of a [T, K] count table, one row per task plus the cluster sizes."""
    counts = [[int(c) for c in row] for row in counts]
    k = len(counts[0]) if counts else 0
    lines = [
        "| task | " + " | ".join(f"c{j}" for j in range(k)) + " |",
        "| --- |" + " ---: |" * k,
    ]
    lines += [
        f"| {name} | " + " | ".join(map(str, row)) + " |"
        for name, row in zip(task_names, counts, strict=True)
    ]
    sizes = [sum(row[j] for row in counts) for j in range(k)]
    lines.append("| **size** | " + " | ".join(map(str, sizes)) + " |")
    return lines
