"""Checkpoints: orbax CheckpointManager holding the train state, the data iterator states and the
config together, saved asynchronously with a keep policy.

Layout: <workdir>/checkpoints/<step>/{state, data, config}. 'data' holds every process's iterator
state ({'process_<i>': state}), gathered across hosts at save time, so a multi-host run resumes each
host's input stream exactly.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxlvlm.train.multihost import allgather_json


class Checkpointer:
    """Saves and restores (state, data iterator state, config) at a step.

    ``save`` is asynchronous: the next train steps run while the previous state is written;
    ``wait`` blocks until every pending save is durable (call it before exiting).
    """

    def __init__(self, workdir: str, keep: int = 2, async_save: bool = True):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep if keep and keep > 0 else None,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "data", "config")
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, data_state: Any, config: dict) -> None:
        """Saves at ``step``; ``data_state`` is this process's JSON-able iterator state (or None)."""
        states = allgather_json(data_state)
        data = {f"process_{i}": s for i, s in enumerate(states)}
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(data),
                config=ocp.args.JsonSave(config),
            ),
            force=True,
        )

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, Any, dict]:
        """(state placed as ``abstract_state``'s shardings, this process's data state, config)."""
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=ocp.args.JsonRestore(),
                config=ocp.args.JsonRestore(),
            ),
        )
        data = restored["data"] or {}
        key = f"process_{jax.process_index()}"
        if data and key not in data:
            raise ValueError(
                f"{self.directory}/{step}: the checkpoint holds data states for {sorted(data)} but "
                f"this is {key}; resume with the same number of processes as the run that saved it"
            )
        return restored["state"], data.get(key), restored["config"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying ``shardings``: what ``restore`` needs to place arrays right."""
    return jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )
