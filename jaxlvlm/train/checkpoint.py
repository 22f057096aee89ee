"""Checkpoints that survive the faults a long run meets: a damaged latest step, a failed save.

``Checkpointer`` holds (train state, data iterator states, config) per step under
<workdir>/checkpoints/<step>/{state, data, config}; ``RoundCheckpoints`` (federated) holds (server and
client state, round meta) under <workdir>/rounds/. Both are orbax CheckpointManagers with async saves
behind one fault policy (``FaultTolerantCheckpoints``):

- At start, temporary directories left by an interrupted or failed save are removed (counted in
  the log); they were never complete, orbax ignores them anyway, but they take disk space.
- On resume the newest step is tried first; a step that cannot be restored is reported in one line
  and the next older one is tried. Once one restores, the damaged newer steps are moved (never
  deleted) to <workdir>/<dir>_damaged/<step>; if none restores, the run stops listing what was tried
  and nothing is moved.
- A save that fails (no space, permissions, I/O) stops the run with one sentence: which step, why,
  where, the last good step and that rerunning the same command resumes from it.

'data' holds every process's iterator state ({'process_<i>': state}), gathered across hosts at save
time, so a multi-host run resumes each host's input stream exactly.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxlvlm.files import PathLike, move_tree, run_path
from jaxlvlm.multihost import allgather_json
from jaxlvlm.train.fingerprint import ConfigDriftError, check_fingerprint

TMP_MARKER = ".orbax-checkpoint-tmp"

PyTree = Any


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written; the run stopped, earlier checkpoints are intact."""


class CheckpointRestoreError(RuntimeError):
    """No checkpoint of the workdir could be restored; the message lists what was tried."""


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


class FaultTolerantCheckpoints:
    """An orbax CheckpointManager in ``directory`` under the fault policy of the module docstring."""

    def __init__(
        self, directory: PathLike, item_names: tuple[str, ...], keep: int | None, what: str
    ):
        # A local directory or a gs:// URL; orbax writes both through TensorStore and epath.
        self.path = run_path(directory)
        self.directory = os.fspath(self.path)
        self.what = what
        self._pending: int | None = None
        self._remove_leftover_tmp()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep if keep and keep > 0 else None,
            enable_async_checkpointing=True,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.path, options=options, item_names=item_names)

    def _remove_leftover_tmp(self) -> None:
        if jax.process_index() != 0 or not self.path.is_dir():
            return
        leftovers = [p.name for p in self.path.iterdir() if TMP_MARKER in p.name]
        for name in leftovers:
            (self.path / name).rmtree(missing_ok=True)
        if leftovers:
            logging.warning(
                "removed %d temporary checkpoint directories of an unfinished save in %s: %s",
                len(leftovers),
                self.directory,
                sorted(leftovers),
            )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def _save_error(self, step: int, e: BaseException) -> CheckpointSaveError:
        self.manager.reload()
        good = [s for s in self.all_steps() if s != step]
        last = (
            f"the last good checkpoint is step {good[-1]}, and rerunning the same command "
            "resumes from it"
            if good
            else "no earlier checkpoint exists, so rerunning the same command starts over"
        )
        return CheckpointSaveError(
            f"could not save {self.what} step {step} to {self.directory}: {_one_line(e)}. "
            f"The run stopped; {last} (free space or fix permissions there first)."
        )

    def _save(self, step: int, args) -> None:
        # orbax waits for the previous async save at the start of a new one anyway; waiting here
        # first attributes a failure to the step that failed (the previous one, or this one).
        self.wait()
        try:
            self.manager.save(step, args=args, force=True)
        except Exception as e:  # noqa: BLE001 - any failure of the writer is a failed save
            raise self._save_error(step, e) from e
        self._pending = step

    def wait(self) -> None:
        """Blocks until every pending save is durable; a failed one raises CheckpointSaveError."""
        try:
            self.manager.wait_until_finished()
            self.manager.check_for_errors()
        except Exception as e:  # noqa: BLE001 - any failure of the async writer
            failed, self._pending = self._pending, None
            raise self._save_error(failed if failed is not None else -1, e) from e
        self._pending = None

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.manager.close()

    def restore_newest(self, restore_one: Callable[[int], Any]) -> tuple[int, Any] | None:
        """(step, restore_one(step)) of the newest step that restores, or None without checkpoints.

        restore_one raises on a damaged step; the step is reported and the next older one tried.
        A ConfigDriftError (the workdir belongs to another run) is not damage: it propagates.
        """
        failures: list[tuple[int, str]] = []
        for step in reversed(self.all_steps()):
            try:
                value = restore_one(step)
            except ConfigDriftError:
                raise
            except Exception as e:  # noqa: BLE001 - TensorStore, orbax and JSON errors alike
                failures.append((step, _one_line(e)))
                logging.error(
                    "%s step %d in %s cannot be restored (%s); trying the next older one",
                    self.what,
                    step,
                    self.directory,
                    failures[-1][1],
                )
                continue
            if failures:
                self._set_aside([s for s, _ in failures])
                logging.warning(
                    "resumed from %s step %d after skipping damaged step(s) %s (moved to %s)",
                    self.what,
                    step,
                    [s for s, _ in failures],
                    self.damaged_directory,
                )
            return step, value
        if failures:
            tried = "; ".join(f"step {s}: {why}" for s, why in failures)
            raise CheckpointRestoreError(
                f"no {self.what} in {self.directory} can be restored (tried {tried}). Nothing was "
                "moved or deleted; restore the files, or use a new --workdir to start over."
            )
        return None

    @property
    def damaged_directory(self) -> str:
        return self.directory + "_damaged"

    def _set_aside(self, steps: list[int]) -> None:
        """Moves damaged step directories out of the manager's sight (kept, never deleted)."""
        if jax.process_index() == 0:
            damaged = run_path(self.damaged_directory)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for step in steps:
                src = self.path / str(step)
                if src.exists():
                    move_tree(src, damaged / f"{step}-{stamp}")
        self.manager.reload()


class Checkpointer(FaultTolerantCheckpoints):
    """Saves and restores (state, data iterator state, config) at a step of a phase.

    ``save`` is asynchronous: the next train steps run while the previous state is written;
    ``wait`` blocks until every pending save is durable (call it before exiting).
    """

    def __init__(self, workdir: PathLike, keep: int = 2):
        super().__init__(
            run_path(workdir) / "checkpoints", ("state", "data", "config"), keep, "checkpoint"
        )

    def save(self, step: int, state: Any, data_state: Any, config: dict) -> None:
        """Saves at ``step``; ``data_state`` is this process's JSON-able iterator state (or None)."""
        states = allgather_json(data_state)
        data = {f"process_{i}": s for i, s in enumerate(states)}
        self._save(
            step,
            ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(data),
                config=ocp.args.JsonSave(config),
            ),
        )

    def read_config(self, step: int) -> dict:
        """The config JSON saved with ``step``."""
        return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))[
            "config"
        ]

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


# ----------------------------------------------------------------------------- federated rounds


def _kept(leaf) -> bool:
    return int(getattr(leaf, "size", 1)) > 0


def _prune(tree: PyTree) -> PyTree:
    """The tree without zero-size leaves and without containers left empty (orbax refuses both)."""
    if isinstance(tree, dict):
        out = {k: _prune(v) for k, v in tree.items()}
        return {k: v for k, v in out.items() if not (isinstance(v, dict) and not v)}
    return tree if _kept(tree) else {}


def _refill(template: PyTree, pruned_restored: PyTree) -> PyTree:
    """Puts the restored leaves back into ``template``'s structure; zero-size leaves become zeros."""
    leaves = iter(jax.tree_util.tree_leaves(pruned_restored))
    flat, treedef = jax.tree_util.tree_flatten(template)
    out = [next(leaves) if _kept(t) else jnp.zeros(t.shape, t.dtype) for t in flat]
    return jax.tree_util.tree_unflatten(treedef, out)


def abstract_of(tree: PyTree) -> PyTree:
    """ShapeDtypeStructs (with the arrays' shardings) of a tree of arrays: a restore template."""

    def one(x):
        x = jnp.asarray(x)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)

    return jax.tree_util.tree_map(one, tree)


class RoundCheckpoints(FaultTolerantCheckpoints):
    """Per-round checkpoints in ``<workdir>/rounds``: save after a round, restore the latest.

    Items: 'state' (server state and every client's kept state, arrays only) and 'meta' (JSON:
    rounds done, schedule, rounds log, wall seconds, the run's fingerprint). orbax cannot save empty
    containers or zero-size arrays (a baseline client keeps ``{}``): they are left out on save and
    rebuilt from the template on restore.
    """

    def __init__(self, workdir: PathLike, fingerprint: dict, keep: int = 2):
        super().__init__(run_path(workdir) / "rounds", ("state", "meta"), keep, "round checkpoint")
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))

    def save(self, rounds_done: int, state: PyTree, meta: dict) -> None:
        """Saves ``state`` (arrays) and ``meta`` (JSON; the fingerprint is added) as rounds_done."""
        meta = {**meta, "rounds_done": rounds_done, "fingerprint": self.fingerprint}
        self._save(
            rounds_done,
            ocp.args.Composite(
                state=ocp.args.StandardSave(_prune(state)), meta=ocp.args.JsonSave(meta)
            ),
        )

    def read_meta(self, rounds_done: int) -> dict:
        """The JSON side of a checkpoint, its fingerprint checked against this run's."""
        meta = self.manager.restore(
            rounds_done, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
        )["meta"]
        check_fingerprint(f"{self.directory}/{rounds_done}", meta["fingerprint"], self.fingerprint)
        return meta

    def restore(self, rounds_done: int, template: PyTree) -> PyTree:
        """The state saved at ``rounds_done``, shaped like ``template`` (arrays or
        ShapeDtypeStructs), as uncommitted arrays on the default device (like freshly built ones)."""
        abstract = abstract_of(template) if template is not None else None
        got = self.manager.restore(
            rounds_done,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(_prune(abstract))),
        )["state"]
        # orbax returns arrays committed to their device; the runner's own state is uncommitted
        # (jit places it next to the sharded frozen backbone), so hand back uncommitted copies.
        return jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x)), _refill(abstract, got))
