"""mode 'federated': K clients, each with one task and its own data partition (METHODS.md §4, §5.1).

Every client holds a task label and an IID (or Dirichlet label-skew) share of that task's training
data. Rounds follow the approach's schedule; in each, every client runs its program (init / local
steps over E epochs / final, jaxlvlm.methods.pilot.programs) for all clients at once (backend 'vmap')
or one after the other ('loop'), the server checks the uploads (a bad one is rejected, named, and
the round continues without it) and aggregates. Only the adapters / connector and the LoRA travel;
the frozen vision tower and LLM are shared once. At the end each client's personalised model is
evaluated on its task's test split: per client, per task (mean over its clients), macro over tasks.

config.method.approach:
  pilot        stage 1 (task + client adapters, difference loss) then CT-MoA stage 2; task-aware
               adapter averaging and adaptive LoRA aggregation (eq. 16); schedule of §4(d)
  fedavg       connector + LoRA averaged over all clients every round (FedIT-style)
  fedprox      fedavg with the proximal term μ/2 ||w - w_global||² in local training
  local        every client trains alone for the same rounds (no communication)
  centralized  one model trained on the union of all clients' data (upper bound)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxlvlm.data.composition import partition_dirichlet, partition_iid
from jaxlvlm.data.pipeline import TaskSource, make_train_iterator, sources_from_config
from jaxlvlm.data.sources import SubsetSource
from jaxlvlm.methods import pilot as P
from jaxlvlm.methods.pilot import programs as PG
from jaxlvlm.runners import _plots
from jaxlvlm.runners._federated_rounds import (
    SUMMARY_FILE,
    RoundCheckpoints,
    read_summary,
    run_fingerprint,
)
from jaxlvlm.runners._phase import run_phase, scores_vector, write_json_atomic
from jaxlvlm.runners.continual import _base_params, _phase_config, _specs_of, check_base_lr
from jaxlvlm.runners.registry import register_runner

APPROACHES = ("pilot", "fedavg", "fedprox", "local", "centralized")

METHOD_DEFAULTS: dict[str, Any] = dict(
    approach="pilot",
    clients_per_task=2,
    partition="iid",  # 'iid' | 'dirichlet' (label skew over each task's answers)
    dirichlet_alpha=0.5,
    rounds=3,
    local_epochs=1,
    backend="vmap",  # 'vmap' | 'loop'
    lr_lora=2e-3,
    lr_connector=2e-4,
    weight_decay=0.0,
    lambda_diff=0.1,
    lambda_balance=0.01,
    lambda_z=0.001,
    neighbours=0,  # ATA's M; 0 = min(3, K - 1)
    prox_mu=0.01,
    cross_hidden_dim=256,
    base_steps=0,
    base_sources=(),
    base_lr=0.0,  # learning rate of the base phase; 0 = optim.lr (one base shared by all approaches)
    evaluate_base=False,
    fault_drill_client="",  # a client name whose round-1 upload is corrupted (NaN) on purpose
)


def method_settings(config) -> dict[str, Any]:
    """config.method over METHOD_DEFAULTS; unknown keys or values raise, naming them."""
    given = config.method.to_dict() if hasattr(config.method, "to_dict") else dict(config.method)
    unknown = sorted(set(given) - set(METHOD_DEFAULTS))
    if unknown:
        raise ValueError(
            f"config.method: unknown keys {unknown} for mode 'federated'; known: {sorted(METHOD_DEFAULTS)}"
        )
    m = {**METHOD_DEFAULTS, **given}
    if m["approach"] not in APPROACHES:
        raise ValueError(f"config.method.approach={m['approach']!r}: choose one of {APPROACHES}")
    if m["backend"] not in P.client.BACKENDS:
        raise ValueError(f"config.method.backend={m['backend']!r}: choose 'vmap' or 'loop'")
    check_base_lr(m)
    if m["partition"] not in ("iid", "dirichlet"):
        raise ValueError(f"config.method.partition={m['partition']!r}: choose 'iid' or 'dirichlet'")
    return m


@dataclasses.dataclass
class Client:
    name: str
    task: str
    task_id: int
    source: TaskSource

    @property
    def num_examples(self) -> int:
        return len(self.source.source)


def make_clients(config, m, tasks: list[str], image_size: int) -> list[Client]:
    """clients_per_task clients per task, each with an IID / Dirichlet share of the task's data."""
    out = []
    for t, task in enumerate(tasks):
        for k, ts in enumerate(
            sources_from_config(_specs_of(config, task), tasks, config.seed, image_size)
        ):
            n = len(ts.source)
            if m["partition"] == "iid":
                parts = partition_iid(n, m["clients_per_task"], config.seed + 17 * t + k)
            else:
                answers = [str(ts.source[i].get("answer", "")) for i in range(n)]
                labels = np.unique(answers, return_inverse=True)[1]
                parts = partition_dirichlet(
                    labels, m["clients_per_task"], m["dirichlet_alpha"], config.seed + 17 * t + k
                )
            for j, part in enumerate(parts):
                name = f"{task}#{len([c for c in out if c.task == task])}"
                del j
                out.append(
                    Client(name, task, t, TaskSource(SubsetSource(ts.source, part, name), t))
                )
    return out


# ----------------------------------------------------------------------------- client batches


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
            b = {k: np.asarray(v) for k, v in batch.items() if k in PG.BATCH_KEYS}
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
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree)))


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def _take(tree, i):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


# ----------------------------------------------------------------------------- models


def _stage_model(run, connector: str, kwargs: dict):
    from jaxlvlm.train import setup as S

    cfg = dataclasses.replace(
        run.model_cfg, connector=connector, connector_kwargs=tuple(sorted(kwargs.items()))
    )
    return cfg, S.build(cfg, run.runtime)


def _init_connectors(cfg, seed: int, count: int):
    """``count`` fresh connector parameter trees (leaves [count, ...]) of cfg's connector.

    Only the connector is initialised (one jitted, vmapped init), as the LVLM would build it.
    """
    from jaxlvlm.models.connector import make_connector

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


@register_runner("federated")
def run_federated(config, workdir: str) -> dict:
    """Runs the federated scenario; writes report.md / summary.json.

    Resumable: every round ends with a checkpoint in workdir/rounds (jaxlvlm.runners._federated_rounds)
    and a rerun continues after the latest one; a finished run (summary.json present) is read back,
    not retrained. A workdir of a run with a different config is refused, naming the key.
    Returns {'summary', 'report' (report.md path), 'resumed_from' (rounds restored from a checkpoint:
    0 = a fresh start, -1 = the run was already finished)}.
    """
    from jaxlvlm.train import trainer as TR

    m = method_settings(config)
    tasks = list(config.data.tasks) or list(
        dict.fromkeys(dict(s)["task"] for s in config.data.sources)
    )
    os.makedirs(workdir, exist_ok=True)
    finished_fp = run_fingerprint(TR.config_json(config), m, evaluation=True)
    done = read_summary(workdir, finished_fp)
    if done is not None:
        logging.info("federated run in %s is finished (%s); reading it back", workdir, SUMMARY_FILE)
        return {
            "summary": done,
            "report": os.path.join(workdir, "report.md"),
            "resumed_from": -1,
        }
    base_params = _base_params(config, workdir, tasks, m)
    c = _phase_config(config, [s for t in tasks for s in _specs_of(config, t)], 1, tasks, lora=True)
    run = TR.prepare_run(c, workdir)
    clients = make_clients(config, m, tasks, run.image_cfg.image_size)
    if m["approach"] == "centralized":
        out = _run_centralized(config, workdir, tasks, clients, base_params, m, finished_fp)
        return {**out, "resumed_from": 0}
    fingerprint = {
        **run_fingerprint(TR.config_json(config), m),
        "clients": [[cl.name, cl.num_examples] for cl in clients],
    }
    result = _run_rounds(config, workdir, m, tasks, clients, base_params, run, fingerprint)
    summary = {**result["summary"], "config_fingerprint": finished_fp}
    return {
        "summary": summary,
        "report": write_federated_report(workdir, summary),
        "resumed_from": result["resumed_from"],
    }


def _run_rounds(config, workdir, m, tasks, clients, base_params, run, fingerprint) -> dict:
    """The round loop of the federated approaches (all but 'centralized'), resuming after the latest
    round checkpoint, then the clients' evaluation -> {'summary', 'resumed_from'}."""
    from jaxlvlm.train.lora import init_lora

    t0 = time.perf_counter()
    K, T = len(clients), len(tasks)
    n = jnp.asarray([cl.num_examples for cl in clients], jnp.float32)
    own_task = jnp.asarray([cl.task_id for cl in clients], jnp.int32)
    frozen = {k: v for k, v in base_params.items() if k != "connector"}
    text = run.model_cfg.text
    lora0 = init_lora(
        jax.random.PRNGKey(config.seed + 5), text, list(config.lora.targets), config.lora.rank
    )
    lt_kw = dict(
        lora_alpha=config.lora.alpha,
        lr_lora=m["lr_lora"],
        lr_connector=m["lr_connector"],
        weight_decay=m["weight_decay"],
    )
    names = [cl.name for cl in clients]
    rounds_log = []
    approach = m["approach"]
    M = m["neighbours"] or min(3, K - 1)

    if approach == "pilot":
        cfg1, model1 = _stage_model(run, "pilot_stage1", {})
        cfg2, model2 = _stage_model(
            run, "pilot_ctmoa", {"num_tasks": T, "cross_hidden_dim": m["cross_hidden_dim"]}
        )
        base_conn = base_params["connector"]  # LLaVA's projector -> ψ_t (same parameter names)
        task_avgs = _stack([base_conn] * T)
        stage1_init = _init_connectors(cfg1, config.seed + 1000, K)
        stage2_init = _init_connectors(cfg2, config.seed + 2000, K)
        client_state = {"client_adapter": stage1_init["client_adapter"]}
        lora = _stack([lora0] * K)
        schedule = P.round_schedule(m["rounds"])
    else:
        model = run.model
        payload = _stack([{"connector": base_params["connector"], "lora": lora0}] * K)
        client_state = _stack([{}] * K)
        schedule = [(r, "baseline") for r in range(1, m["rounds"] + 1)]

    # Programs are built once: the compiled round is cached per program.
    if approach == "pilot":
        prog1 = PG.stage1_program(
            PG.LocalTraining(model1, aux="stage1", lambda_diff=m["lambda_diff"], **lt_kw)
        )
        prog2 = PG.stage2_program(
            PG.LocalTraining(
                model2,
                aux="stage2",
                lambda_balance=m["lambda_balance"],
                lambda_z=m["lambda_z"],
                **lt_kw,
            ),
            T,
        )
    else:
        mu = m["prox_mu"] if approach == "fedprox" else 0.0
        prog_base = PG.baseline_program(PG.LocalTraining(model, prox_mu=mu, **lt_kw))

    def server_client_state(stage_done):
        # What a round checkpoint holds; stage_done picks Pilot's client state shape.
        if approach != "pilot":
            return {"payload": payload, "client_state": client_state}
        kept = {"client_adapter": client_state["client_adapter"]}
        if stage_done == "stage2":
            kept["cross_adapters"] = stage2_init["cross_adapters"]
            kept["router"] = stage2_init["router"]
        return {"task_avgs": task_avgs, "lora": lora, "client_state": kept}

    ckpt = RoundCheckpoints(workdir, fingerprint, keep=2)
    start, wall_before = 0, 0.0
    try:
        latest = ckpt.latest()
        if latest is not None:
            meta = ckpt.read_meta(latest)
            if [tuple(e) for e in meta["schedule"]] != [tuple(e) for e in schedule]:
                raise ValueError(
                    f"{ckpt.directory}/{latest}: saved round schedule {meta['schedule']} differs "
                    f"from this run's {schedule}; use a new --workdir"
                )
            restored = ckpt.restore(latest, server_client_state(schedule[latest - 1][1]))
            client_state = restored["client_state"]
            if approach == "pilot":
                task_avgs, lora = restored["task_avgs"], restored["lora"]
            else:
                payload = restored["payload"]
            rounds_log, wall_before, start = list(meta["rounds_log"]), float(meta["wall_s"]), latest
            logging.info(
                "federated %s: resuming after round %d of %d (%s)",
                approach,
                latest,
                len(schedule),
                ckpt.directory,
            )
        for i in range(start, len(schedule)):
            rnd, stage = schedule[i]
            t_round = time.perf_counter()
            batches, active = client_batches(run, clients, m["local_epochs"], config.seed + 31 * i)
            keys = jax.random.split(jax.random.PRNGKey(config.seed + i), K)
            if approach == "pilot" and stage == "stage1":
                program = prog1
                payload = {"task_adapter": _take(task_avgs, own_task), "lora": lora}
                state_in = client_state
            elif approach == "pilot":
                program = prog2
                payload = {
                    "task_averages": _stack([task_avgs] * K),
                    "own_task": own_task,
                    "lora": lora,
                }
                if (
                    "router" not in client_state
                ):  # entering stage 2: fresh cross adapters and router
                    client_state = {
                        "client_adapter": client_state["client_adapter"],
                        "cross_adapters": stage2_init["cross_adapters"],
                        "router": stage2_init["router"],
                    }
                state_in = client_state
            else:
                program = prog_base
                state_in = client_state
            uploads, client_state, metrics = P.run_clients(
                m["backend"], program, payload, state_in, batches, jnp.asarray(active), keys, frozen
            )
            uploads = [_take(uploads, k) for k in range(K)]
            if m["fault_drill_client"] in names and i == 0:
                bad = names.index(m["fault_drill_client"])
                uploads[bad] = jax.tree_util.tree_map(
                    lambda x: jnp.full_like(x, jnp.nan), uploads[bad]
                )
            if approach == "pilot":
                previous = [
                    {
                        "task_adapter": _take(payload["task_adapter"], k)
                        if stage == "stage1"
                        else _take(task_avgs, int(own_task[k])),
                        "lora": _take(lora, k),
                    }
                    for k in range(K)
                ]
            else:
                previous = [_take(payload, k) for k in range(K)]
            got = P.collect_updates(names, uploads, previous)
            for _who, why in got.rejected:
                logging.warning("round %d (%s): rejected the update of %s", rnd, stage, why)
            valid = jnp.asarray(got.valid)
            if approach == "pilot":
                task_avgs, lora = P.pilot_aggregate(
                    got.stacked["task_adapter"],
                    got.stacked["lora"],
                    own_task,
                    n,
                    valid,
                    T,
                    M,
                    task_avgs,
                )
                down = tree_bytes(task_avgs) * K + tree_bytes(lora)
            elif approach in ("fedavg", "fedprox"):
                glob = P.fedavg(got.stacked, n, valid)
                payload = _stack([glob] * K)
                down = tree_bytes(payload)
            else:  # local: nothing travels; each keeps its own (a rejected one its previous)
                payload = got.stacked
                down = 0
            up = 0 if approach == "local" else tree_bytes(_stack(uploads))
            loss = np.asarray(metrics["ce"])
            act = np.asarray(active)
            rounds_log.append(
                {
                    "round": rnd,
                    "stage": stage,
                    "seconds": time.perf_counter() - t_round,
                    "local_steps": int(act.sum()),
                    "bytes_up": up,
                    "bytes_down": down,
                    "rejected": [dict(client=w, reason=r) for w, r in got.rejected],
                    "mean_train_ce": float((loss * act).sum() / max(act.sum(), 1)),
                }
            )
            logging.info("federated %s round %d %s: %s", approach, rnd, stage, rounds_log[-1])
            ckpt.save(
                i + 1,
                {"task_avgs": task_avgs, "lora": lora, "client_state": client_state}
                if approach == "pilot"
                else {"payload": payload, "client_state": client_state},
                {
                    "schedule": [list(e) for e in schedule],
                    "round": rnd,
                    "stage": stage,
                    "rounds_log": rounds_log,
                    "wall_s": wall_before + time.perf_counter() - t0,
                },
            )
    finally:
        ckpt.close()

    # Personalised models of every client, evaluated on its task's test split.
    if approach == "pilot":
        conn = [
            P.stage2_connector_params(
                task_avgs,
                int(own_task[k]),
                T,
                _take(client_state, k)["client_adapter"],
                _take(client_state, k)["cross_adapters"],
                _take(client_state, k)["router"],
            )
            for k in range(K)
        ]
        eval_model_cfg = (
            "pilot_ctmoa",
            {"num_tasks": T, "cross_hidden_dim": m["cross_hidden_dim"]},
        )
        loras = [_take(lora, k) for k in range(K)]
    else:
        conn = [_take(payload, k)["connector"] for k in range(K)]
        loras = [_take(payload, k)["lora"] for k in range(K)]
        eval_model_cfg = None
    scores = _evaluate_clients(config, workdir, tasks, clients, frozen, conn, loras, eval_model_cfg)
    wall = wall_before + time.perf_counter() - t0
    summary = _summary(approach, tasks, clients, scores, rounds_log, wall, m)
    summary["resumed_after_round"] = start  # schedule entries restored from workdir/rounds
    return {"summary": summary, "resumed_from": start}


def _evaluate_clients(
    config, workdir, tasks, clients, frozen, conn, loras, model_cfg
) -> list[float]:
    """Score in [0, 100] of each client's personalised model on its task's eval sources."""
    from jaxlvlm.train import trainer as TR

    out = []
    evaluators = {}
    for k, cl in enumerate(clients):
        if cl.task not in evaluators:
            c = _phase_config(config, _specs_of(config, cl.task), 1, tasks, lora=True)
            with c.unlocked():
                c.data.eval_sources = tuple(_specs_of(config, cl.task, "eval_sources"))
                if model_cfg is not None:
                    c.model.connector = model_cfg[0]
                    c.model.connector_kwargs = dict(model_cfg[1])
            run = TR.prepare_run(c, os.path.join(workdir, "eval"))
            evaluators[cl.task] = TR.make_evaluator(run)
        state = types.SimpleNamespace(params={**frozen, "connector": conn[k]}, lora=loras[k])
        result = evaluators[cl.task](state)
        out.append(100.0 * float(result.scores[cl.task]))
        if jax.process_index() == 0:
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in cl.name)
            os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
            with open(os.path.join(workdir, "eval", f"predictions_{safe}.jsonl"), "w") as f:
                for p in result.predictions:
                    f.write(json.dumps(p) + "\n")
    return out


def _run_centralized(config, workdir, tasks, clients, base_params, m, fingerprint):
    total = sum(cl.num_examples for cl in clients)
    steps = max(
        1, math.ceil(m["rounds"] * m["local_epochs"] * total / config.data.global_batch_size)
    )
    c = _phase_config(
        config,
        [s for t in tasks for s in _specs_of(config, t)],
        steps,
        tasks,
        freeze=("vision/.*", "llm/.*"),
        lora=True,
    )
    with c.unlocked():
        c.optim.lr = m["lr_lora"]
    res = run_phase(
        c,
        os.path.join(workdir, "centralized"),
        init_params=base_params,
        need_state=False,
        train_sources=[cl.source for cl in clients],
    )
    per_task = scores_vector(res.scores, tasks)
    scores = [float(per_task[cl.task_id]) for cl in clients]
    summary = _summary("centralized", tasks, clients, scores, [], res.wall_s, m)
    summary["train_steps"] = steps
    summary["config_fingerprint"] = fingerprint
    return {"summary": summary, "report": write_federated_report(workdir, summary)}


def _summary(approach, tasks, clients, scores, rounds_log, wall, m) -> dict:
    per_task = {
        t: float(np.mean([s for s, cl in zip(scores, clients, strict=True) if cl.task == t]))
        for t in tasks
    }
    return {
        "approach": approach,
        "tasks": tasks,
        "backend": m["backend"],
        "clients": [
            dict(name=cl.name, task=cl.task, examples=cl.num_examples, score=s)
            for cl, s in zip(clients, scores, strict=True)
        ],
        "per_task": per_task,
        "macro": float(np.mean(list(per_task.values()))),
        "rounds": rounds_log,
        "wall_s": wall,
    }


def write_federated_report(workdir: str, s: dict) -> str | None:
    """report.md, then summary.json (atomically: its presence marks the run finished), process 0."""
    if jax.process_index() != 0:
        return None
    lines = [f"# jaxlvlm: federated instruction tuning ({s['approach']})", ""]
    lines += [f"Macro score over tasks: {s['macro']:.2f}", ""]
    lines += _plots.markdown_table(
        ["task", "score (0-100)"], [[t, v] for t, v in s["per_task"].items()]
    ) + [""]
    lines += _plots.markdown_table(
        ["client", "task", "examples", "score"],
        [[c["name"], c["task"], c["examples"], c["score"]] for c in s["clients"]],
    ) + [""]
    if s["rounds"]:
        lines += ["## Rounds", ""]
        lines += _plots.markdown_table(
            [
                "round",
                "stage",
                "seconds",
                "local steps",
                "MB up",
                "MB down",
                "rejected",
                "train CE",
            ],
            [
                [
                    r["round"],
                    r["stage"],
                    r["seconds"],
                    r["local_steps"],
                    r["bytes_up"] / 1e6,
                    r["bytes_down"] / 1e6,
                    "; ".join(x["reason"] for x in r["rejected"]) or "-",
                    r["mean_train_ce"],
                ]
                for r in s["rounds"]
            ],
        ) + [""]
    lines += [f"Wall time: {s['wall_s']:.1f} s", ""]
    path = os.path.join(workdir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    write_json_atomic(os.path.join(workdir, SUMMARY_FILE), s)
    return path


__all__ = ["client_batches", "make_clients", "run_federated"]
