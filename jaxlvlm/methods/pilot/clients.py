"""Federated clients: who holds which data, and each client's local batches for a round.

Every client holds a task label and an IID (or Dirichlet label-skew) share of that task's training
data (docs/methods.md section 4). Batches are host numpy arrays padded to the longest bucket,
stacked on a client axis for the round's client programs (jaxlvlm.methods.pilot.client).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxlvlm.data.composition import partition_dirichlet, partition_iid
from jaxlvlm.data.pipeline import TaskSource, make_train_iterator, sources_from_config
from jaxlvlm.data.sources import SubsetSource
from jaxlvlm.methods.pilot.programs import BATCH_KEYS
from jaxlvlm.methods.pilot.settings import FederatedSettings
from jaxlvlm.train.phase_config import task_specs


@dataclasses.dataclass
class Client:
    name: str
    task: str
    task_id: int
    source: TaskSource

    @property
    def num_examples(self) -> int:
        return len(self.source.source)


def make_clients(config, s: FederatedSettings, tasks: list[str], image_size: int) -> list[Client]:
    """clients_per_task clients per task, each with an IID / Dirichlet share of the task's data."""
    out = []
    for t, task in enumerate(tasks):
        for k, ts in enumerate(
            sources_from_config(task_specs(config, task), tasks, config.seed, image_size)
        ):
            n = len(ts.source)
            seed = config.seed + 17 * t + k
            if s.partition == "iid":
                parts = partition_iid(n, s.clients_per_task, seed)
            else:
                answers = [str(ts.source[i].get("answer", "")) for i in range(n)]
                labels = np.unique(answers, return_inverse=True)[1]
                parts = partition_dirichlet(labels, s.clients_per_task, s.dirichlet_alpha, seed)
            for part in parts:
                name = f"{task}#{len([c for c in out if c.task == task])}"
                out.append(
                    Client(name, task, t, TaskSource(SubsetSource(ts.source, part, name), t))
                )
    return out


def client_batches(run, clients: list[Client], epochs: int, seed: int):
    """Every client's local batches for one stage: (batches leaves [K, S, B, ...], active [K, S]).

    Host numpy batches padded to the longest bucket; clients with fewer batches idle (inactive).
    """
    data_cfg = dataclasses.replace(run.data_cfg, shuffle=True, num_epochs=epochs)
    length = max(run.data_cfg.buckets)
    per_client = []
    for i, c in enumerate(clients):
        it = make_train_iterator(
            data_cfg, run.tokenizer, run.image_cfg, None, seed + i, sources=[c.source]
        )
        rows = []
        for batch in it:
            b = {k: np.asarray(v) for k, v in batch.items() if k in BATCH_KEYS}
            pad = length - b["input_ids"].shape[1]
            for k in ("input_ids", "attention_mask", "targets", "loss_mask"):
                b[k] = np.pad(b[k], ((0, 0), (0, pad)))
            rows.append(b)
        if not rows:
            raise ValueError(f"client '{c.name}' has no training batches; give its task more data")
        per_client.append(rows)
    steps = max(len(r) for r in per_client)
    active = np.zeros((len(clients), steps), bool)
    stacked = []
    for k, rows in enumerate(per_client):
        active[k, : len(rows)] = True
        rows = rows + [jax.tree_util.tree_map(np.zeros_like, rows[0])] * (steps - len(rows))
        stacked.append(jax.tree_util.tree_map(lambda *xs: np.stack(xs), *rows))
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *stacked), active


def tree_bytes(tree) -> int:
    """Bytes of every leaf of ``tree`` (what a message of it costs on the wire)."""
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree)))


def stack(trees):
    """K trees -> one tree with leaves [K, ...]."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def take(tree, i):
    """Client i's slice of a tree with leaves [K, ...]."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)
