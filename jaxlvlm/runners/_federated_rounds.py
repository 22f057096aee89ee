"""Resumable federated rounds: a per-round checkpoint of server + client state, and the done marker.

After every round the federated runner saves ``<workdir>/rounds/<rounds done>/`` (orbax, atomic: a
step directory appears only once complete; the last ``keep`` are kept) with two items:
  state  the server state (Pilot: task averages + LoRA; baselines: the payload) and every client's
         kept state (Pilot: client adapters, then cross adapters + router), arrays only;
  meta   JSON: rounds_done, the schedule, rounds_log, wall seconds so far and the run's fingerprint.
A rerun restores the latest and goes on with the next round. Because the round's batches and keys are
functions of the round index alone, the resumed run equals an uninterrupted one bitwise.

The fingerprint is a flat {dotted config key: value} of everything that shapes training; a resume (or
a finished ``summary.json``) under a different config is refused with the first differing key named.

orbax cannot save empty containers or zero-size arrays (a baseline client keeps ``{}``): they are
left out on save and rebuilt from the abstract template on restore.
(Module name starts with '_' so the runner registry does not take it for a runner.)
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

ROUNDS_DIR = "rounds"
SUMMARY_FILE = "summary.json"

# Config sections (or dotted keys) that do not change what the rounds train: left out of the
# rounds fingerprint. Evaluation keys are added back for the finished-run check (scores depend on them).
_NOT_TRAINING = (
    "mesh",
    "distributed",
    "train",
    "eval",
    "data.eval_sources",
    "data.eval_batch_size",
    "data.read_threads",
    "data.prefetch",
    "data.worker_count",
)
_EVALUATION = ("eval", "data.eval_sources", "data.eval_batch_size")

PyTree = Any


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and d:
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _under(key: str, sections: tuple[str, ...]) -> bool:
    return any(key == s or key.startswith(s + ".") for s in sections)


def run_fingerprint(config_dict: dict, method: dict, *, evaluation: bool = False) -> dict[str, Any]:
    """{dotted key: JSON value} of the config parts that shape a federated run.

    config_dict: the config as plain JSON (trainer.config_json); method: the method settings with
    their defaults filled in (they replace the config's 'method' section, so an omitted default and
    the same value written out agree); evaluation: also the keys that only change evaluation.
    """
    d = {k: v for k, v in config_dict.items() if k != "method"}
    d["method"] = method
    flat = _flatten(json.loads(json.dumps(d, default=str, sort_keys=True)))
    skip = tuple(s for s in _NOT_TRAINING if not (evaluation and s in _EVALUATION))
    return {k: v for k, v in sorted(flat.items()) if not _under(k, skip)}


def check_fingerprint(where: str, stored: dict, current: dict) -> None:
    """Raises ValueError naming the first key whose value differs between ``stored`` and ``current``."""
    current = json.loads(json.dumps(current, default=str))
    differ = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if differ:
        k = differ[0]
        more = f" (and {len(differ) - 1} more: {differ[1:4]})" if len(differ) > 1 else ""
        raise ValueError(
            f"{where} belongs to a run with a different config: {k} was {stored.get(k)!r}, now "
            f"{current.get(k)!r}{more}. Rerun with the same config to resume, or use a new --workdir."
        )


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


class RoundCheckpoints:
    """Per-round checkpoints in ``<workdir>/rounds``: save after a round, restore the latest.

    Saves are asynchronous (the next round starts while the last one is written); ``close`` waits
    for them, so call it in a ``finally``.
    """

    def __init__(self, workdir: str, fingerprint: dict, keep: int = 2):
        self.directory = os.path.abspath(os.path.join(workdir, ROUNDS_DIR))
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=True, create=True
            ),
            item_names=("state", "meta"),
        )

    def latest(self) -> int | None:
        """Rounds done by the latest complete checkpoint, or None."""
        return self.manager.latest_step()

    def save(self, rounds_done: int, state: PyTree, meta: dict) -> None:
        """Saves ``state`` (arrays) and ``meta`` (JSON; the fingerprint is added) as step rounds_done."""
        meta = {**meta, "rounds_done": rounds_done, "fingerprint": self.fingerprint}
        self.manager.save(
            rounds_done,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_prune(state)), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
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
        try:
            got = self.manager.restore(
                rounds_done,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(_prune(abstract))),
            )["state"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"{self.directory}/{rounds_done}: the saved round state does not match this "
                f"run's server/client state ({e}); use a new --workdir"
            ) from e
        # orbax returns arrays committed to their device; the runner's own state is uncommitted
        # (jit places it next to the sharded frozen backbone), so hand back uncommitted copies.
        return jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x)), _refill(abstract, got))

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def read_summary(workdir: str, fingerprint: dict) -> dict | None:
    """The summary.json of a finished run (checked against ``fingerprint``), or None."""
    path = os.path.join(workdir, SUMMARY_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    stored = summary.get("config_fingerprint")
    if stored is None:
        logging.warning("%s has no config fingerprint (an older run); taking it as done", path)
    else:
        check_fingerprint(path, stored, fingerprint)
    return summary
