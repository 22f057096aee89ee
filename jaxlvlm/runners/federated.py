"""mode 'federated': K clients, each with one task and its own data partition (docs/methods.md
sections 4 and 5.1).

Rounds follow the approach's schedule (jaxlvlm.methods.pilot.approaches): in each, every client runs
the approach's client program (all at once with backend 'vmap', one after the other with 'loop'),
the server checks the uploads (a bad one is rejected, named, and the round goes on without it) and
aggregates. Only the adapters / connector and the LoRA travel; the frozen vision tower and LLM are
shared once. Every round ends with a checkpoint in workdir/rounds, and a rerun continues after the
latest one; a finished run (summary.json) is read back, and a workdir of a run with another config
is refused, naming the key. At the end each client's personalised model is evaluated on its task's
test split: per client, per task (mean over its clients), macro over tasks. 'centralized' trains
one model on the union of the clients' data (one phase; the upper bound).

Each schedule entry's log (summary.json 'rounds', also in the round checkpoint's meta) holds its
timing, traffic, rejections and training loss, 'aggregation_weights' (the [K][K] weights the
server's aggregation applied, row k = what client k got from each upload: ATA's for Pilot's LoRA,
the data-size weights for FedAvg/FedProx; None for local), and with method.round_eval_num > 0
'eval': {client: score (0-100) of its model after this entry on the first round_eval_num test
samples of its task} (the per-round curves).
"""

from __future__ import annotations

import logging
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlvlm.federated.run_parts import (
    SUMMARY_FILE,
    ClientEvaluator,
    evaluate_clients,
    federated_summary,
    federated_tasks,
    read_summary,
    run_fingerprint,
    write_federated_report,
)
from jaxlvlm.files import PathLike, makedirs, run_path
from jaxlvlm.methods.pilot.approaches import make_approach
from jaxlvlm.methods.pilot.client import run_clients
from jaxlvlm.methods.pilot.clients import client_batches, make_clients, stack, take, tree_bytes
from jaxlvlm.methods.pilot.rounds import resume_rounds, server_step
from jaxlvlm.methods.pilot.settings import FederatedSettings
from jaxlvlm.methods.settings import settings_from
from jaxlvlm.runners.registry import register_runner
from jaxlvlm.train import run_setup as RS
from jaxlvlm.train.base_model import base_params
from jaxlvlm.train.checkpoint import RoundCheckpoints
from jaxlvlm.train.phase import run_phase, scores_vector
from jaxlvlm.train.phase_config import phase_config, task_specs


@register_runner("federated", settings=FederatedSettings)
def run_federated(config, workdir: PathLike) -> dict:
    """Runs the federated scenario; writes report.md / summary.json.

    Returns {'summary', 'report', 'resumed_from' (rounds restored from a checkpoint: 0 = a fresh
    start, -1 = the run was already finished)}.
    """
    s = settings_from(FederatedSettings, config.method)
    tasks = federated_tasks(config)
    makedirs(workdir)
    finished = run_fingerprint(config, s, evaluation=True)
    done = read_summary(workdir, finished)
    if done is not None:
        logging.info("federated run in %s is finished (%s); reading it back", workdir, SUMMARY_FILE)
        return {
            "summary": done,
            "report": os.fspath(run_path(workdir) / "report.md"),
            "resumed_from": -1,
        }
    params0 = base_params(config, workdir, tasks, s)
    sources = [x for t in tasks for x in task_specs(config, t)]
    run = RS.prepare_run(phase_config(config, sources, 1, tasks, lora=True), workdir)
    clients = make_clients(config, s, tasks, run.image_cfg.image_size)
    if s.approach == "centralized":
        summary, start = _centralized(config, workdir, tasks, clients, params0, s), 0
    else:
        fp = {**run_fingerprint(config, s), "clients": [[c.name, c.num_examples] for c in clients]}
        summary, start = _rounds(config, workdir, s, tasks, clients, params0, run, fp)
    summary["config_fingerprint"] = finished
    return {
        "summary": summary,
        "report": write_federated_report(workdir, summary),
        "resumed_from": start,
    }


def _rounds(config, workdir, s, tasks, clients, params0, run, fp) -> tuple[dict, int]:
    """The round loop (resuming after the latest round checkpoint), then the clients' evaluation."""
    t0 = time.perf_counter()
    approach = make_approach(config, run, s, params0, clients)
    frozen = {k: v for k, v in params0.items() if k != "connector"}
    names = [c.name for c in clients]
    ckpt = RoundCheckpoints(workdir, fp, keep=2)
    round_eval = (
        ClientEvaluator(config, workdir, tasks, s.round_eval_num) if s.round_eval_num else None
    )
    try:
        state, log, wall_before, start = resume_rounds(ckpt, approach)
        for i in range(start, len(approach.schedule)):
            rnd, stage = approach.schedule[i]
            t_round = time.perf_counter()
            batches, active = client_batches(run, clients, s.local_epochs, config.seed + 31 * i)
            keys = jax.random.split(jax.random.PRNGKey(config.seed + i), len(clients))
            program, payload, client_in = approach.begin(state, stage)
            uploads, client_out, metrics = run_clients(
                s.backend, program, payload, client_in, batches, jnp.asarray(active), keys, frozen
            )
            uploads = _drill([take(uploads, k) for k in range(len(clients))], names, s, i)
            state, got, down, weights = server_step(
                approach, state, stage, names, payload, uploads, client_out
            )
            up = tree_bytes(stack(uploads)) if approach.uploads_travel() else 0
            entry = _round_log(rnd, stage, t_round, active, metrics, got, up, down)
            entry["aggregation_weights"] = weights
            if round_eval is not None:
                # In the log entry, so the curve survives a resume (the checkpoint's meta).
                t_eval = time.perf_counter()
                conn, loras, connector = approach.round_model(state)
                scores = round_eval(clients, frozen, conn, loras, connector)
                entry["eval"] = dict(zip(names, scores, strict=True))
                entry["eval_samples"] = s.round_eval_num
                entry["eval_seconds"] = time.perf_counter() - t_eval
            log.append(entry)
            logging.info("federated %s round %d %s: %s", s.approach, rnd, stage, log[-1])
            meta = {
                "schedule": [list(e) for e in approach.schedule],
                "round": rnd,
                "stage": stage,
                "rounds_log": log,
                "wall_s": wall_before + time.perf_counter() - t0,
            }
            ckpt.save(i + 1, state, meta)
    finally:
        ckpt.close()
    conn, loras = approach.personalised(state)
    scores = evaluate_clients(config, workdir, tasks, clients, frozen, conn, loras, approach)
    summary = federated_summary(
        s, tasks, clients, scores, log, wall_before + time.perf_counter() - t0
    )
    summary["resumed_after_round"] = start  # schedule entries restored from workdir/rounds
    return summary, start


def _drill(uploads, names, s: FederatedSettings, i: int):
    """The fault drill: the named client's round-1 upload is corrupted (NaN) on purpose."""
    if s.fault_drill_client in names and i == 0:
        bad = names.index(s.fault_drill_client)
        uploads[bad] = jax.tree_util.tree_map(lambda x: jnp.full_like(x, jnp.nan), uploads[bad])
    return uploads


def _round_log(rnd, stage, t_round, active, metrics, got, up, down) -> dict:
    for who, why in got.rejected:
        logging.warning("round %d (%s): rejected the update of %s: %s", rnd, stage, who, why)
    loss, act = np.asarray(metrics["ce"]), np.asarray(active)
    return {
        "round": rnd,
        "stage": stage,
        "seconds": time.perf_counter() - t_round,
        "local_steps": int(act.sum()),
        "bytes_up": up,
        "bytes_down": down,
        "rejected": [dict(client=w, reason=r) for w, r in got.rejected],
        "mean_train_ce": float((loss * act).sum() / max(act.sum(), 1)),
    }


def _centralized(config, workdir, tasks, clients, params0, s: FederatedSettings) -> dict:
    total = sum(cl.num_examples for cl in clients)
    steps = max(1, math.ceil(s.rounds * s.local_epochs * total / config.data.global_batch_size))
    sources = [x for t in tasks for x in task_specs(config, t)]
    frozen = ("vision/.*", "llm/.*")
    c = phase_config(config, sources, steps, tasks, freeze=frozen, lora=True, lr=s.lr_lora)
    res = run_phase(
        c,
        run_path(workdir) / "centralized",
        init_params=params0,
        need_state=False,
        train_sources=[cl.source for cl in clients],
    )
    per_task = scores_vector(res.scores, tasks)
    scores = [float(per_task[cl.task_id]) for cl in clients]
    summary = federated_summary(s, tasks, clients, scores, [], res.wall_s)
    summary["train_steps"] = steps
    return summary
