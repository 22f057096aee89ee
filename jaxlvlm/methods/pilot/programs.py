"""Client programs (init / step / final) for Pilot's two stages and the federated baselines.

Only the trainable parts travel and are vmapped over clients: the connector (or Pilot's adapters)
and the LLM's LoRA. The frozen backbone (vision tower, LLM) is closed over once and shared by every
client. Each program is pure and jittable; jaxlvlm.methods.pilot.client runs it (vmap or loop).

Payloads (server -> client), client states (kept on the client between rounds) and uploads:
  baseline      payload {'connector', 'lora'}; state {}; upload {'connector', 'lora'}
  pilot stage1  payload {'task_adapter', 'lora'}; state {'client_adapter'};
                upload {'task_adapter', 'lora'}
  pilot stage2  payload {'task_averages' [T, ...], 'own_task' [], 'lora'};
                state {'client_adapter', 'cross_adapters', 'router'};
                upload {'task_adapter' (= the trained own-task adapter), 'lora'}
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from jaxlvlm.methods.pilot.client import ClientProgram
from jaxlvlm.methods.pilot.losses import (
    find_sown,
    load_balancing_loss,
    masked_image_mean,
    proximal_term,
    router_z_loss,
)
from jaxlvlm.methods.pilot.server import stage2_connector_params
from jaxlvlm.models.apply import apply_batch
from jaxlvlm.models.pilot_connectors import (
    DIFFERENCE_LOSS,
    ROUTER_LOGITS,
    connector_trainable_mask,
)
from jaxlvlm.train.lora import lowrank_of
from jaxlvlm.train.losses import token_nll

BATCH_KEYS = ("input_ids", "attention_mask", "targets", "loss_mask", "pixel_values", "num_images")


@dataclasses.dataclass(frozen=True)
class LocalTraining:
    """How a client trains: the model of this stage, the shared frozen backbone, losses, optimiser.

    The frozen {'vision', 'llm'} parameters are not a field: they come as the round's ``shared``
    argument (one copy for all clients, an argument of the compiled round, never a constant).
    aux: 'none' | 'stage1' (difference loss, weight lambda_diff) | 'stage2' (router losses).
    prox_mu > 0 adds FedProx's μ/2 ||w - w_received||².
    """

    model: nn.Module
    lora_alpha: float
    lr_lora: float = 2e-4
    lr_connector: float = 2e-5
    weight_decay: float = 0.0
    aux: str = "none"
    lambda_diff: float = 0.1
    lambda_balance: float = 0.01
    lambda_z: float = 0.001
    prox_mu: float = 0.0


def real_image_mask(batch: dict) -> jax.Array:
    """[B * N] 1.0 for image slots that hold a real image (the connector sees B * N images)."""
    n = batch["pixel_values"].shape[1]
    return (jnp.arange(n)[None, :] < batch["num_images"][:, None]).reshape(-1).astype(jnp.float32)


def local_loss(lt: LocalTraining, trainable: dict, anchor: dict, batch: dict, frozen: dict):
    """Token-mean answer NLL of the batch plus this stage's auxiliary terms -> (loss, metrics).

    frozen: the shared {'vision', 'llm'} parameters.
    """
    params = {**frozen, "connector": trainable["connector"]}
    lowrank = lowrank_of(trainable["lora"], lt.lora_alpha)
    logits, inter = apply_batch(lt.model, params, batch, lowrank=lowrank, mutable=["intermediates"])
    nll = token_nll(logits, batch["targets"])
    mask = batch["loss_mask"].astype(jnp.float32)
    ce = jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)
    loss = ce
    metrics = {"ce": ce}
    images = real_image_mask(batch)
    if lt.aux == "stage1":
        diff = masked_image_mean(find_sown(inter, DIFFERENCE_LOSS)[0], images)
        loss = loss + lt.lambda_diff * diff
        metrics["difference_loss"] = diff
    elif lt.aux == "stage2":
        z = find_sown(inter, ROUTER_LOGITS)[0]
        lb, lz = load_balancing_loss(z, images), router_z_loss(z, images)
        loss = loss + lt.lambda_balance * lb + lt.lambda_z * lz
        metrics.update(balance_loss=lb, z_loss=lz)
    if lt.prox_mu > 0:
        loss = loss + lt.prox_mu * proximal_term(trainable, anchor)
    metrics["loss"] = loss
    return loss, metrics


def _optimizer(lt: LocalTraining, connector_mask: dict | None) -> optax.GradientTransformation:
    """AdamW with one lr for LoRA and one for the connector; masked connector parts never move."""

    def labels(tree):
        conn = jax.tree_util.tree_map(lambda _: "connector", tree["connector"])
        if connector_mask is not None:
            conn = jax.tree_util.tree_map(
                lambda lab, on: lab if on else "frozen", conn, connector_mask
            )
        return {"connector": conn, "lora": jax.tree_util.tree_map(lambda _: "lora", tree["lora"])}

    return optax.multi_transform(
        {
            "lora": optax.adamw(lt.lr_lora, weight_decay=lt.weight_decay),
            "connector": optax.adamw(lt.lr_connector, weight_decay=lt.weight_decay),
            "frozen": optax.set_to_zero(),
        },
        labels,
    )


def _step_fn(lt: LocalTraining, tx):
    def step(local, batch, frozen):
        batch = {k: batch[k] for k in BATCH_KEYS}
        frozen = jax.lax.stop_gradient(frozen)
        grads, metrics = jax.grad(
            lambda tr: local_loss(lt, tr, local["anchor"], batch, frozen), has_aux=True
        )(local["trainable"])
        updates, opt = tx.update(grads, local["opt"], local["trainable"])
        trainable = optax.apply_updates(local["trainable"], updates)
        return dict(local, trainable=trainable, opt=opt), metrics

    return step


def baseline_program(lt: LocalTraining) -> ClientProgram:
    """FedAvg / FedProx / local-only: the whole connector and the LoRA are trained and sent."""
    tx = _optimizer(lt, None)

    def init(payload, client_state, key):
        del client_state, key
        return {"trainable": payload, "opt": tx.init(payload), "anchor": payload}

    def final(local):
        return local["trainable"], {}

    return ClientProgram(init=init, step=_step_fn(lt, tx), final=final)


def stage1_program(lt: LocalTraining) -> ClientProgram:
    """Pilot stage 1: task adapter (shared through the server) + client adapter (kept local)."""
    tx = _optimizer(lt, None)

    def init(payload, client_state, key):
        del key
        trainable = {
            "connector": {
                "task_adapter": payload["task_adapter"],
                "client_adapter": client_state["client_adapter"],
            },
            "lora": payload["lora"],
        }
        return {"trainable": trainable, "opt": tx.init(trainable), "anchor": trainable}

    def final(local):
        conn = local["trainable"]["connector"]
        upload = {"task_adapter": conn["task_adapter"], "lora": local["trainable"]["lora"]}
        return upload, {"client_adapter": conn["client_adapter"]}

    return ClientProgram(init=init, step=_step_fn(lt, tx), final=final)


def stage2_program(lt: LocalTraining, num_tasks: int) -> ClientProgram:
    """Pilot stage 2: CT-MoA; other tasks' adapters and the client adapter are frozen."""

    def connector_of(payload, client_state):
        return stage2_connector_params(
            payload["task_averages"],
            payload["own_task"],
            num_tasks,
            client_state["client_adapter"],
            client_state["cross_adapters"],
            client_state["router"],
        )

    def mask_of(conn):
        return connector_trainable_mask(conn, "stage2")

    def init(payload, client_state, key):
        del key
        conn = connector_of(payload, client_state)
        trainable = {"connector": conn, "lora": payload["lora"]}
        tx = _optimizer(lt, mask_of(conn))
        return {"trainable": trainable, "opt": tx.init(trainable), "anchor": trainable}

    def step(local, batch, frozen):
        tx = _optimizer(lt, mask_of(local["trainable"]["connector"]))
        return _step_fn(lt, tx)(local, batch, frozen)

    def final(local):
        conn = local["trainable"]["connector"]
        upload = {"task_adapter": conn["own_task_adapter"], "lora": local["trainable"]["lora"]}
        state = {k: conn[k] for k in ("client_adapter", "cross_adapters", "router")}
        return upload, state

    return ClientProgram(init=init, step=step, final=final)
