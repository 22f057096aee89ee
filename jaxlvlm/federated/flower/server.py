"""The ServerApp's work: gather the sites, run the approach's schedule, checkpoint, evaluate.

Run config (flwr run --run-config; see app/pyproject.toml): config (the federation's jaxlvlm
config, file.py[:arg]), workdir (the server's directory), num_sites (sites to wait for before round
1), round_timeout (seconds a round waits for its sites), join_timeout (seconds to wait for the
sites to join), overrides (dotted key=value pairs applied to the config), jax_cache (the persistent
compilation cache; '' = <workdir>/jax_cache).

Each schedule entry: every connected site gets its slot of the approach's payload (Pilot: all task
adapters and its own personalised LoRA), trains, and uploads; ``methods.pilot.rounds.server_step``
checks and aggregates exactly as in the in-process runner. A site that sends nothing in time, fails,
or is refused is left out of that entry and named in the round's log. After every entry the server
state is checkpointed (<workdir>/rounds); a restarted server resumes after the newest one. At the
end each site scores its personalised model; summary.json and report.md are the runner's.
"""

from __future__ import annotations

import json
import logging
import time

from flwr.app import Message
from flwr.serverapp import Grid

from jaxlvlm.errors import ConfigError
from jaxlvlm.federated import run_parts as F
from jaxlvlm.federated.flower import protocol as P
from jaxlvlm.federated.flower.compile_cache import use_compilation_cache
from jaxlvlm.federated.flower.exchange import exchange
from jaxlvlm.files import makedirs
from jaxlvlm.methods.pilot.approaches import make_approach
from jaxlvlm.methods.pilot.clients import take, tree_bytes
from jaxlvlm.methods.pilot.rounds import resume_rounds, server_step
from jaxlvlm.train import run_setup as RS
from jaxlvlm.train.base_model import base_params
from jaxlvlm.train.checkpoint import RoundCheckpoints
from jaxlvlm.train.phase_config import phase_config, task_specs


class Sites:
    """Which SuperNode is which site: sites are asked who they are when their node first shows."""

    def __init__(self, grid: Grid, fingerprint: dict):
        self.grid, self.fingerprint = grid, fingerprint
        self.node_of: dict[str, int] = {}  # site -> its newest node id
        self.members: dict[str, P.Member] = {}
        self.refused: dict[str, str] = {}  # site -> why its config was refused
        self.asked: set[int] = set()

    def refresh(self, timeout: float) -> None:
        new = [n for n in self.grid.get_node_ids() if n not in self.asked]
        if not new:
            return
        meta = P.meta_record(fingerprint=self.fingerprint)
        msgs = {str(n): Message(P.content(meta), dst_node_id=n, message_type="query") for n in new}
        replies, missing = exchange(self.grid, msgs, timeout)
        for key, why in missing.items():
            logging.warning("node %s did not say which site it is: %s", key, why)
        for key, reply in replies.items():
            self.asked.add(int(key))
            m = reply.content["meta"]
            name = str(m["client"])
            theirs = P.read_json_field(m, "fingerprint")
            why = P.refusal(f"site '{name}'", theirs, self.fingerprint)
            if why is not None:
                logging.error("refused site %s: %s", name, why)
                self.refused[name] = why
                continue
            self.refused.pop(name, None)
            self.node_of[name] = int(key)
            self.members[name] = P.Member(
                name, str(m["task"]), int(m["task_id"]), int(m["num_examples"])
            )

    def wait_for(self, count: int, timeout: float, ask_timeout: float) -> list[P.Member]:
        """The roster once ``count`` sites joined, ordered like the in-process runner's clients
        (by task id, then name)."""
        deadline = time.monotonic() + timeout
        while len(self.members) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {sorted(self.members)} of {count} sites joined within {timeout:g} s "
                    f"(refused: {self.refused or 'none'}); start the missing SuperNodes or "
                    "lower num_sites"
                )
            self.refresh(ask_timeout)
            time.sleep(0.5)
        return sorted(self.members.values(), key=lambda m: (m.task_id, m.name))

    def connected(self) -> dict[str, int]:
        online = set(self.grid.get_node_ids())
        return {s: n for s, n in self.node_of.items() if n in online}


def serve(grid: Grid, run_config: dict) -> dict:
    """Runs (or resumes, or reads back) the federation of ``run_config``; returns the summary."""
    config = P.load_config(str(run_config["config"]), str(run_config.get("overrides", "")))
    s = P.settings(config)
    if s.round_eval_num:
        # The server holds no client data to score; the sites would have to evaluate every round.
        raise ConfigError(
            f"config.method.round_eval_num={s.round_eval_num}: the per-round evaluation runs in "
            "the in-process runner (mode 'federated') only; set it to 0 for the Flower app"
        )
    fp = P.fingerprint(config, s)
    workdir = makedirs(str(run_config["workdir"]))  # local or a URL (gs://bucket/run)
    timeout = float(run_config["round_timeout"])
    # jax's persistent compilation cache takes local directories and gs:// URLs alike.
    use_compilation_cache(str(run_config.get("jax_cache") or workdir / "jax_cache"))
    finished = F.run_fingerprint(config, s, evaluation=True)
    done = F.read_summary(workdir, finished)
    if done is not None:
        logging.info("federation in %s is finished; reading it back", workdir)
        return done
    sites = Sites(grid, fp)
    roster = sites.wait_for(
        int(run_config["num_sites"]), float(run_config["join_timeout"]), timeout
    )
    tasks = F.federated_tasks(config)
    params0 = base_params(config, workdir, tasks, s)
    sources = [x for t in tasks for x in task_specs(config, t)]
    run = RS.prepare_run(phase_config(config, sources, 1, tasks, lora=True), workdir)
    approach = make_approach(config, run, s, params0, roster)
    ckpt_fp = {**fp, "clients": [[m.name, m.num_examples] for m in roster]}
    t0 = time.perf_counter()
    ckpt = RoundCheckpoints(workdir, ckpt_fp, keep=2)
    try:
        state, log, wall_before, start = resume_rounds(ckpt, approach)
        for i in range(start, len(approach.schedule)):
            state, entry = _round(grid, sites, approach, roster, state, i, timeout)
            log.append(entry)
            meta = {
                "schedule": [list(e) for e in approach.schedule],
                "round": entry["round"],
                "stage": entry["stage"],
                "rounds_log": log,
                "wall_s": wall_before + time.perf_counter() - t0,
            }
            ckpt.save(i + 1, state, meta)
    finally:
        ckpt.close()
    scores = _evaluate(grid, sites, approach, roster, state, timeout)
    summary = F.federated_summary(
        s, tasks, roster, scores, log, wall_before + time.perf_counter() - t0
    )
    summary["engine"] = "flower"
    summary["resumed_after_round"] = start
    summary["not_evaluated"] = [m.name for m, x in zip(roster, scores, strict=True) if x != x]
    summary["config_fingerprint"] = finished
    F.write_federated_report(workdir, summary)
    return summary


def _messages(sites, approach, roster, payload, kind, index, stage) -> dict[str, Message]:
    rnd = approach.schedule[min(index, len(approach.schedule) - 1)][0]
    out = {}
    for name, node in sites.connected().items():
        if name not in [m.name for m in roster]:
            continue
        k = [m.name for m in roster].index(name)
        meta = P.meta_record(
            index=index,
            round=rnd,
            stage=stage,
            fingerprint=sites.fingerprint,
            roster=P.roster_json(roster),
        )
        content = P.content(meta, take(payload, k))
        out[name] = Message(content, dst_node_id=node, message_type=kind, group_id=str(rnd))
    return out


def _round(grid, sites: Sites, approach, roster, state, i: int, timeout: float):
    """Schedule entry i: (next server state, its log entry)."""
    rnd, stage = approach.schedule[i]
    t_round = time.perf_counter()
    sites.refresh(timeout)  # a restarted SuperNode has a new node id: ask who it is
    names = [m.name for m in roster]
    _, payload, _ = approach.begin(state, stage)
    msgs = _messages(sites, approach, roster, payload, "train", i, stage)
    replies, absent = exchange(grid, msgs, timeout)
    for name in names:
        if name not in msgs:
            absent[name] = sites.refused.get(name) or f"site '{name}': no SuperNode connected"
    uploads, stats = [], {}
    for name in names:
        reply = replies.get(name)
        meta = reply.content["meta"] if reply is not None else None
        if meta is not None and "refused" in meta:
            absent[name] = str(meta["refused"])
            reply = None
        uploads.append(None if reply is None else P.tree_of(reply.content))
        if reply is not None:
            stats[name] = json.loads(str(meta["stats"]))
    # The sites keep their own client state; the server's copy is the stage's fresh layout only.
    client_states = approach.template(stage)["client_state"]
    state, got, down, weights = server_step(
        approach, state, stage, names, payload, uploads, client_states, absent
    )
    steps = sum(x["local_steps"] for x in stats.values())
    ce = sum(x["mean_train_ce"] * x["local_steps"] for x in stats.values())
    entry = {
        "index": i + 1,
        "round": rnd,
        "stage": stage,
        "seconds": time.perf_counter() - t_round,
        "local_steps": steps,
        "bytes_up": sum(tree_bytes(u) for u in uploads if u is not None),
        "bytes_down": down,
        "rejected": [dict(client=w, reason=r) for w, r in got.rejected],
        "left_out": sorted(absent),
        "mean_train_ce": ce / max(steps, 1),
        "aggregation_weights": weights,
    }
    for who, why in got.rejected:
        logging.warning("round %d (%s): left out %s: %s", rnd, stage, who, why)
    logging.info("flower %s round %d %s: %s", approach.__class__.__name__, rnd, stage, entry)
    return state, entry


def _evaluate(grid, sites: Sites, approach, roster, state, timeout: float) -> list[float]:
    """Each site's score of its personalised model (NaN for a site that did not answer)."""
    sites.refresh(timeout)
    index = len(approach.schedule)
    stage = approach.schedule[-1][1]
    _, payload, _ = approach.begin(state, stage)
    replies, missing = exchange(
        grid, _messages(sites, approach, roster, payload, "evaluate", index, stage), timeout
    )
    for name, why in missing.items():
        logging.warning("no score from %s: %s", name, why)
    scores = []
    for m in roster:
        meta = replies[m.name].content["meta"] if m.name in replies else None
        ok = meta is not None and "score" in meta
        scores.append(float(meta["score"]) if ok else float("nan"))
    return scores
