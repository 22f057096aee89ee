"""One site of a Flower federation: its own config and data, the frozen backbone, its kept state.

A site is named by its SuperNode's node config: ``config`` (file.py[:arg], the site's own jaxlvlm
config: its data sources and tasks, the model, the method settings), ``client`` (which of that
config's clients this site is, e.g. 'digits_palette#0'; may be left out when the config has one)
and ``workdir`` (the site's directory). The server never sends data; it sends the round, the stage,
the fingerprint, the roster (every site's name, task and size) and this site's payload.

The site runs the same jitted client program as the in-process runner ('loop' backend, one client)
with the same batches and keys that client k of the simulated round gets, and keeps what never
leaves it (Pilot's client adapter, cross adapters and router) in
<workdir>/federation_<fingerprint hash>/site/rounds, one
checkpoint per schedule entry, so a restarted site continues from what it last kept.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxlvlm.federated import run_parts as F
from jaxlvlm.federated.flower import protocol as P
from jaxlvlm.federated.flower.arrays import like
from jaxlvlm.federated.flower.compile_cache import use_compilation_cache
from jaxlvlm.files import makedirs, run_path
from jaxlvlm.methods.pilot.approaches import make_approach
from jaxlvlm.methods.pilot.client import run_clients
from jaxlvlm.methods.pilot.clients import client_batches, make_clients, stack, take
from jaxlvlm.methods.pilot.server import check_update, stage2_connector_params
from jaxlvlm.train import run_setup as RS
from jaxlvlm.train.base_model import base_params
from jaxlvlm.train.checkpoint import RoundCheckpoints
from jaxlvlm.train.phase_config import phase_config, task_specs


class Site:
    """A site's config, data and backbone (built once per process)."""

    def __init__(
        self,
        config_spec: str,
        client: str,
        workdir: str,
        overrides: str = "",
        jax_cache: str | None = None,
    ):
        self.config = P.load_config(config_spec, overrides)
        self.s = P.settings(self.config)
        self.fingerprint = P.fingerprint(self.config, self.s)
        # One SuperNode may serve several federations: each gets its own directory, named by the
        # fingerprint; the compilation cache (default <workdir>/jax_cache) is shared.
        digest = hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True, default=str).encode())
        self.workdir = makedirs(run_path(workdir) / f"federation_{digest.hexdigest()[:12]}")
        # jax's persistent compilation cache takes local directories and gs:// URLs alike.
        use_compilation_cache(jax_cache or os.fspath(run_path(workdir) / "jax_cache"))
        self.tasks = F.federated_tasks(self.config)
        sources = [x for t in self.tasks for x in task_specs(self.config, t)]
        c = phase_config(self.config, sources, 1, self.tasks, lora=True)
        self.run = RS.prepare_run(c, self.workdir)
        clients = make_clients(self.config, self.s, self.tasks, self.run.image_cfg.image_size)
        names = [cl.name for cl in clients]
        if not client and len(clients) == 1:
            client = names[0]
        if client not in names:
            raise ValueError(
                f"node config client='{client}' is not a client of {config_spec} (its clients: "
                f"{names}); set client=<one of them> in the SuperNode's --node-config"
            )
        self.me = clients[names.index(client)]
        self.member = P.Member(self.me.name, self.me.task, self.me.task_id, self.me.num_examples)
        self._approaches: dict[tuple[P.Member, ...], object] = {}

    @functools.cached_property
    def params0(self):
        return base_params(self.config, self.workdir, self.tasks, self.s)

    @functools.cached_property
    def frozen(self):
        return {k: v for k, v in self.params0.items() if k != "connector"}

    def approach(self, roster: list[P.Member]):
        """(the federation's round approach, this site's index k in the roster)."""
        names = [m.name for m in roster]
        if self.me.name not in names:
            raise ValueError(f"site '{self.me.name}' is not in the server's roster {names}")
        key = tuple(roster)
        if key not in self._approaches:  # built once: it holds the jitted client programs
            self._approaches[key] = make_approach(
                self.config, self.run, self.s, self.params0, roster
            )
        return self._approaches[key], names.index(self.me.name)

    def _kept(self, approach, k: int, before: int):
        """What this site kept after the newest schedule entry < ``before`` (0-based), or None."""
        ckpt = RoundCheckpoints(self.workdir / "site", self.fingerprint, keep=3)
        try:
            steps = [d for d in ckpt.all_steps() if d <= before]
            if not steps:
                return None
            stage_done = approach.schedule[steps[-1] - 1][1]
            return ckpt.restore(steps[-1], take(approach.template(stage_done)["client_state"], k))
        finally:
            ckpt.close()

    def _keep(self, index: int, state, meta: dict) -> None:
        if not jax.tree_util.tree_leaves(state):
            return  # the baselines keep nothing on the client (orbax cannot save an empty tree)
        ckpt = RoundCheckpoints(self.workdir / "site", self.fingerprint, keep=3)
        try:
            # Entry ``index`` again: the server never kept the first answer (it was restarted, or
            # the reply was lost), so what this site kept then, and after, is replaced.
            for stale in [d for d in ckpt.all_steps() if d >= index]:
                ckpt.manager.delete(stale)
            ckpt.save(index, state, meta)
        finally:
            ckpt.close()

    def train(self, index: int, stage: str, roster, payload: dict, nan: bool = False):
        """Schedule entry ``index`` (0-based): (upload, {local_steps, mean_train_ce}).

        payload: this site's slot of the server's payload (numpy leaves, no client axis).
        """
        approach, k = self.approach(roster)
        program, template, _ = approach.begin(approach.template(stage), stage)
        payload = _arranged(take(template, k), payload)
        # The stage's fresh client state (Pilot: new cross adapters and router entering stage 2),
        # overwritten by what this site kept: exactly what approach.begin gives client k in-process.
        client_in = dict(take(approach.template(stage)["client_state"], k))
        client_in.update(self._kept(approach, k, index) or {})
        seed = self.config.seed
        batches, active = client_batches(
            self.run, [self.me], self.s.local_epochs, seed + 31 * index + k
        )
        keys = jax.random.split(jax.random.PRNGKey(seed + index), len(roster))[k : k + 1]
        upload, kept, metrics = run_clients(
            "loop",
            program,
            stack([payload]),
            stack([client_in]),
            batches,
            jnp.asarray(active),
            keys,
            self.frozen,
        )
        upload, kept = take(upload, 0), take(kept, 0)
        if nan:  # the fault drill: this site's update is corrupted on purpose
            logging.warning("site %s: sending a NaN update (fault drill)", self.me.name)
            upload = jax.tree_util.tree_map(lambda x: jnp.full_like(x, jnp.nan), upload)
        self._keep(index + 1, kept, {"stage": stage, "schedule": approach.schedule})
        loss, act = np.asarray(metrics["ce"])[0], np.asarray(active)[0]
        return upload, {
            "local_steps": int(act.sum()),
            "mean_train_ce": float((loss * act).sum() / max(act.sum(), 1)),
        }

    def evaluate(self, roster, index: int, payload: dict) -> float:
        """Score in [0, 100] of this site's personalised model on its task's eval sources, after
        ``index`` schedule entries; payload: this site's slot of the final payload."""
        approach, k = self.approach(roster)
        stage = approach.schedule[-1][1]
        template = take(approach.begin(approach.template(stage), stage)[1], k)
        payload = _arranged(template, payload)
        if "task_averages" in payload:  # Pilot: the CT-MoA connector from what the site kept
            kept = self._kept(approach, k, index)
            if kept is None:
                raise RuntimeError(f"site '{self.me.name}' has trained no round; nothing to score")
            conn = stage2_connector_params(
                payload["task_averages"],
                int(payload["own_task"]),
                approach.T,
                kept["client_adapter"],
                kept["cross_adapters"],
                kept["router"],
            )
        else:
            conn = payload["connector"]
        scores = F.evaluate_clients(
            self.config,
            self.workdir,
            self.tasks,
            [self.me],
            self.frozen,
            [conn],
            [payload["lora"]],
            approach,
        )
        return scores[0]


def _arranged(template, received: dict):
    """The received payload in the template's layout; a payload of another shape is an error."""
    payload = like(template, received)
    why = check_update("server", payload, template)
    if why is not None:
        raise ValueError(f"the server's payload does not fit this site's model: {why}")
    return payload
