"""The federated approaches as round programs: what the server sends, runs and keeps per round.

A ``RoundApproach`` answers four questions for the one round loop (jaxlvlm.runners.federated):
  ``begin(state, stage)``  -> (client program, per-client payload [K, ...], client states [K, ...]);
  ``previous(state, payload, stage)`` -> what each client held before the round (the update check);
  ``aggregate(state, collected, client_states, stage)`` -> (next state, bytes sent down, the
      aggregation weights it applied: W [K, K] with W[k, j] = the weight of client j's upload in
      what client k gets back (Pilot: ATA's LoRA weights; FedAvg/FedProx: the data-size weights,
      every row the same), or None when nothing is aggregated (local));
  ``personalised(state)`` -> each client's connector and LoRA for evaluation, and its connector;
  ``round_model(state)`` -> (connectors, LoRAs, (connector name, kwargs) or None for the run's
      own): each client's model as it stands after any schedule entry (the per-round curves).
Its state is a dict of arrays (checkpointed after every round): Pilot keeps the task averages, the
personalised LoRA and every client's kept adapters; the baselines keep the payload and ``{}``.

  pilot     stage 1 (task + client adapters, difference loss) then CT-MoA stage 2; task-aware
            adapter averaging and adaptive LoRA aggregation (eq. 16); schedule of section 4(d)
  fedavg    connector + LoRA averaged over all clients every round (FedIT-style)
  fedprox   fedavg with the proximal term mu/2 ||w - w_global||^2 in local training
  local     every client trains alone for the same rounds (no communication)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxlvlm.methods.pilot import programs as PG
from jaxlvlm.methods.pilot.aggregation import fedavg_with_weights
from jaxlvlm.methods.pilot.clients import stack, take, tree_bytes
from jaxlvlm.methods.pilot.server import pilot_aggregate, round_schedule, stage2_connector_params
from jaxlvlm.methods.pilot.settings import FederatedSettings
from jaxlvlm.models.connector import make_connector
from jaxlvlm.train import setup as S
from jaxlvlm.train.lora import init_lora

PyTree = Any


def stage_model(run, connector: str, kwargs: dict):
    """(model config, model) of ``run`` with another connector (Pilot's stage connectors)."""
    cfg = dataclasses.replace(
        run.model_cfg, connector=connector, connector_kwargs=tuple(sorted(kwargs.items()))
    )
    return cfg, S.build(cfg, run.runtime)


def init_connectors(cfg, seed: int, count: int):
    """``count`` fresh connector parameter trees (leaves [count, ...]) of cfg's connector.

    Only the connector is initialised (one jitted, vmapped init), as the LVLM would build it.
    """
    conn = make_connector(
        cfg.connector,
        cfg.vision.hidden_size,
        cfg.text.hidden_size,
        bias=cfg.projector_bias,
        **dict(cfg.connector_kwargs),
    )
    feats = jnp.zeros((1, cfg.image_tokens_per_image, cfg.vision.hidden_size), jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(seed), count)
    return jax.jit(jax.vmap(lambda k: nn.meta.unbox(conn.init(k, feats)["params"])))(keys)


def local_training(model, config, s: FederatedSettings, **kw) -> PG.LocalTraining:
    """How every client trains locally (AdamW with the settings' rates) with ``model``."""
    return PG.LocalTraining(
        model,
        lora_alpha=config.lora.alpha,
        lr_lora=s.lr_lora,
        lr_connector=s.lr_connector,
        weight_decay=s.weight_decay,
        **kw,
    )


def initial_lora(config, run):
    return init_lora(
        jax.random.PRNGKey(config.seed + 5),
        run.model_cfg.text,
        list(config.lora.targets),
        config.lora.rank,
    )


class BaselineApproach:
    """FedAvg, FedProx (average + proximal term) and local-only (no communication)."""

    eval_connector = None  # the run's own connector

    def __init__(self, config, run, s: FederatedSettings, base_params, clients):
        self.K = len(clients)
        self.average = s.approach in ("fedavg", "fedprox")
        self.n = jnp.asarray([cl.num_examples for cl in clients], jnp.float32)
        mu = s.prox_mu if s.approach == "fedprox" else 0.0
        self.program = PG.baseline_program(local_training(run.model, config, s, prox_mu=mu))
        self.schedule = [(r, "baseline") for r in range(1, s.rounds + 1)]
        payload = {"connector": base_params["connector"], "lora": initial_lora(config, run)}
        self.initial = {"payload": stack([payload] * self.K), "client_state": stack([{}] * self.K)}

    def template(self, stage_done: str) -> PyTree:
        del stage_done
        return self.initial

    def begin(self, state, stage):
        del stage
        return self.program, state["payload"], state["client_state"]

    def previous(self, state, payload, stage):
        del state, stage
        return [take(payload, k) for k in range(self.K)]

    def aggregate(self, state, got, client_states, stage):
        del state, stage
        if not self.average:  # local: each keeps its own (a rejected one its previous)
            return {"payload": got.stacked, "client_state": client_states}, 0, None
        avg, w = fedavg_with_weights(got.stacked, self.n, jnp.asarray(got.valid))
        payload = stack([avg] * self.K)
        weights = jnp.broadcast_to(w[None, :], (self.K, self.K))  # everyone gets the same mean
        return {"payload": payload, "client_state": client_states}, tree_bytes(payload), weights

    def uploads_travel(self) -> bool:
        return self.average

    def personalised(self, state):
        conn = [take(state["payload"], k)["connector"] for k in range(self.K)]
        return conn, [take(state["payload"], k)["lora"] for k in range(self.K)]

    def round_model(self, state):
        return (*self.personalised(state), None)


class PilotApproach:
    """Pilot: stage-1 task/client adapters, then CT-MoA; task averaging + ATA on the server."""

    def __init__(self, config, run, s: FederatedSettings, base_params, clients):
        T = 1 + max(cl.task_id for cl in clients)
        self.K, self.T = len(clients), T
        self.M = s.neighbours or min(3, self.K - 1)
        self.n = jnp.asarray([cl.num_examples for cl in clients], jnp.float32)
        self.own_task = jnp.asarray([cl.task_id for cl in clients], jnp.int32)
        kwargs2 = {"num_tasks": T, "cross_hidden_dim": s.cross_hidden_dim}
        cfg1, model1 = stage_model(run, "pilot_stage1", {})
        cfg2, model2 = stage_model(run, "pilot_ctmoa", kwargs2)
        self.eval_connector = ("pilot_ctmoa", kwargs2)
        self.stage2_init = init_connectors(cfg2, config.seed + 2000, self.K)
        self.prog1 = PG.stage1_program(
            local_training(model1, config, s, aux="stage1", lambda_diff=s.lambda_diff)
        )
        lt2 = local_training(
            model2, config, s, aux="stage2", lambda_balance=s.lambda_balance, lambda_z=s.lambda_z
        )
        self.prog2 = PG.stage2_program(lt2, T)
        self.schedule = round_schedule(s.rounds)
        adapters = init_connectors(cfg1, config.seed + 1000, self.K)["client_adapter"]
        self.initial = {
            # LLaVA's projector -> every task's adapter psi_t (same parameter names)
            "task_avgs": stack([base_params["connector"]] * T),
            "lora": stack([initial_lora(config, run)] * self.K),
            "client_state": {"client_adapter": adapters},
        }

    def template(self, stage_done: str) -> PyTree:
        if stage_done != "stage2":
            return self.initial
        return dict(self.initial, client_state=self._stage2_state(self.initial["client_state"]))

    def _stage2_state(self, client_state):
        return {
            "client_adapter": client_state["client_adapter"],
            "cross_adapters": self.stage2_init["cross_adapters"],
            "router": self.stage2_init["router"],
        }

    def begin(self, state, stage):
        if stage == "stage1":
            payload = {
                "task_adapter": take(state["task_avgs"], self.own_task),
                "lora": state["lora"],
            }
            return self.prog1, payload, state["client_state"]
        payload = {
            "task_averages": stack([state["task_avgs"]] * self.K),
            "own_task": self.own_task,
            "lora": state["lora"],
        }
        client_state = state["client_state"]
        if "router" not in client_state:  # entering stage 2: fresh cross adapters and router
            client_state = self._stage2_state(client_state)
        return self.prog2, payload, client_state

    def previous(self, state, payload, stage):
        def adapter(k):
            if stage == "stage1":
                return take(payload["task_adapter"], k)
            return take(state["task_avgs"], int(self.own_task[k]))

        return [{"task_adapter": adapter(k), "lora": take(state["lora"], k)} for k in range(self.K)]

    def aggregate(self, state, got, client_states, stage):
        del stage
        task_avgs, lora, weights = pilot_aggregate(
            got.stacked["task_adapter"],
            got.stacked["lora"],
            self.own_task,
            self.n,
            jnp.asarray(got.valid),
            self.T,
            self.M,
            state["task_avgs"],
        )
        new = {"task_avgs": task_avgs, "lora": lora, "client_state": client_states}
        return new, tree_bytes(task_avgs) * self.K + tree_bytes(lora), weights

    def uploads_travel(self) -> bool:
        return True

    def personalised(self, state):
        cs = state["client_state"]
        conn = [
            stage2_connector_params(
                state["task_avgs"],
                int(self.own_task[k]),
                self.T,
                take(cs, k)["client_adapter"],
                take(cs, k)["cross_adapters"],
                take(cs, k)["router"],
            )
            for k in range(self.K)
        ]
        return conn, [take(state["lora"], k) for k in range(self.K)]

    def round_model(self, state):
        """After stage 1 a client's model is the stage-1 connector (its task's average adapter and
        its own client adapter) with its ATA LoRA; from stage 2 on, the CT-MoA connector."""
        cs = state["client_state"]
        if "router" in cs:
            return (*self.personalised(state), self.eval_connector)
        conn = [
            {
                "task_adapter": take(state["task_avgs"], int(self.own_task[k])),
                "client_adapter": take(cs, k)["client_adapter"],
            }
            for k in range(self.K)
        ]
        loras = [take(state["lora"], k) for k in range(self.K)]
        return conn, loras, ("pilot_stage1", {})


def make_approach(config, run, s: FederatedSettings, base_params, clients):
    """The round approach of s.approach (all but 'centralized', which is one phase)."""
    cls = PilotApproach if s.approach == "pilot" else BaselineApproach
    return cls(config, run, s, base_params, clients)
