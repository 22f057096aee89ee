"""The parameter overview logged at start: path, shape, dtype, trainable or frozen, sharding."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxlvlm.train.optimizer import FROZEN, trainable_path_strs


def param_rows(trainable: dict, labels: Any) -> list[tuple[str, str, str, str, str, int]]:
    """(path, shape, dtype, group label, sharding spec, size) per leaf of {'params', 'lora'}."""
    names = jax.tree_util.tree_leaves(trainable_path_strs(trainable))
    leaves = jax.tree_util.tree_leaves(trainable)
    labs = jax.tree_util.tree_leaves(labels)
    rows = []
    for name, leaf, lab in zip(names, leaves, labs, strict=True):
        sharding = getattr(leaf, "sharding", None)
        spec = str(getattr(sharding, "spec", "")) if sharding is not None else ""
        size = int(np.prod(leaf.shape)) if leaf.shape else 1
        rows.append((name, str(tuple(leaf.shape)), str(leaf.dtype), lab, spec, size))
    return rows


def format_param_table(trainable: dict, labels: Any) -> str:
    """A fixed-width table plus totals of trainable and frozen parameters."""
    rows = param_rows(trainable, labels)
    header = ("path", "shape", "dtype", "group", "sharding")
    widths = [
        max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
        for i in range(5)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "-" * len(line)]
    for r in rows:
        out.append("  ".join(r[i].ljust(widths[i]) for i in range(5)))
    frozen = sum(r[5] for r in rows if r[3] == FROZEN)
    total = sum(r[5] for r in rows)
    out.append(f"total {total:,} parameters: {total - frozen:,} trainable, {frozen:,} frozen")
    return "\n".join(out)
