"""Parameter pytrees <-> Flower ArrayRecords, without pickle.

A nested dict of arrays becomes one ArrayRecord whose keys are the '/'-joined paths
('task_adapter/fc1/kernel'); Flower serialises each array with ``np.save(allow_pickle=False)``.
Dtypes numpy cannot save (bfloat16 and the other ml_dtypes) travel as raw unsigned integers of the
same width, and 0-d arrays (which Flower turns into shape (1,)) as one-element vectors; a
ConfigRecord next to the arrays lists both ('dtype:<key>' -> dtype name, 'scalar:<key>' -> True).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord

PyTree = Any
SEP = "/"
_RAW = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _key(path) -> str:
    parts = []
    for p in path:
        name = str(getattr(p, "key", getattr(p, "idx", p)))
        if SEP in name:
            raise ValueError(f"parameter name '{name}' contains '{SEP}'; rename it to send it")
        parts.append(name)
    return SEP.join(parts)


def to_record(tree: PyTree) -> tuple[ArrayRecord, ConfigRecord]:
    """(arrays, layout) of a nested dict of arrays: {path: array} and what ``from_record`` needs
    to give every leaf back its dtype and shape ([...] as in the tree)."""
    arrays, layout = ArrayRecord(), ConfigRecord()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        x = np.asarray(jax.device_get(leaf))
        key = _key(path)
        if x.dtype.kind not in "biufc":  # ml_dtypes (kind 'V'): np.save would need pickle
            layout[f"dtype:{key}"] = x.dtype.name
            x = x.view(_RAW[x.dtype.itemsize])
        if x.ndim == 0:
            layout[f"scalar:{key}"] = True
            x = x.reshape(1)
        arrays[key] = Array(np.ascontiguousarray(x))
    return arrays, layout


def from_record(arrays: ArrayRecord, layout: ConfigRecord | None = None) -> dict:
    """The nested dict of numpy arrays that ``to_record`` was given (empty sub-dicts excepted)."""
    layout = layout if layout is not None else ConfigRecord()
    out: dict = {}
    for key, arr in arrays.items():
        x = arr.numpy()
        if f"dtype:{key}" in layout:
            x = x.view(jnp.dtype(str(layout[f"dtype:{key}"])))
        if f"scalar:{key}" in layout:
            x = x.reshape(())
        node = out
        *parents, leaf = key.split(SEP)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = x
    return out


def like(template: PyTree, received: dict) -> PyTree:
    """``received`` arranged as ``template`` (its empty dicts and key order back), or the received
    dict unchanged when the keys differ (the update check then names what is missing or extra)."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    flat = {}
    for path, _ in paths:
        node = received
        for part in _key(path).split(SEP):
            if not isinstance(node, dict) or part not in node:
                return received
            node = node[part]
        flat[_key(path)] = node
    if len(flat) != _count(received):
        return received
    return jax.tree_util.tree_unflatten(treedef, [flat[_key(p)] for p, _ in paths])


def _count(d) -> int:
    return sum(_count(v) for v in d.values()) if isinstance(d, dict) else 1
