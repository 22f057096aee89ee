"""Host batches -> global jax.Arrays with the batch sharding, and the small cross-process agreements
(bucket, whether anyone still has data) that keep every process's batch shapes identical."""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from jaxlvlm.sharding import batch_sharding


def agree_max(values: np.ndarray) -> np.ndarray:
    """Elementwise max of a small int vector over the real jax processes (identity with one).

    Simulated processes (process_index/process_count overrides in tests) do not communicate.
    """
    values = np.asarray(values, np.int32)
    count = jax.process_count()
    if count <= 1:
        return values

    gathered = multihost_utils.process_allgather(values)
    return np.asarray(gathered).reshape(count, -1).max(axis=0)


def to_global_batch(
    local: dict[str, np.ndarray], mesh: Mesh, process_count: int
) -> dict[str, jax.Array]:
    """Places each process's local rows as one global array per key: leading dim over ('data', 'fsdp').

    Shapes: local [b, ...] on each of P processes -> global [P * b, ...].
    """
    out = {}
    for key, value in local.items():
        global_shape = (value.shape[0] * process_count, *value.shape[1:])
        out[key] = jax.make_array_from_process_local_data(
            batch_sharding(mesh, value.ndim), value, global_shape
        )
    return out
