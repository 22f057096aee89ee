"""Shardings of the whole train state, derived from the parameters' logical axes."""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh

from jaxlvlm.sharding import replicated


def opt_state_shardings(abstract_opt_state: Any, trainable_shardings: Any, mesh: Mesh) -> Any:
    """Each optimizer-state leaf takes the sharding of the parameter whose path ends its own path
    (Adam's mu/nu mirror the parameter tree); counters and the like are replicated."""
    by_path = {
        tuple(path): s for path, s in jax.tree_util.tree_flatten_with_path(trainable_shardings)[0]
    }
    rep = replicated(mesh)

    def pick(path, leaf):
        path = tuple(path)
        for start in range(len(path)):
            hit = by_path.get(path[start:])
            if hit is not None:
                return hit
        return rep

    return jax.tree_util.tree_map_with_path(pick, abstract_opt_state)


def replicated_like(tree: Any, mesh: Mesh) -> Any:
    rep = replicated(mesh)
    return jax.tree_util.tree_map(lambda _: rep, tree)
