"""mode 'lifelong': Adapt-∞ (METHODS.md §3) over a stream of datasets joining a growing pool.

At time step t the datasets of config.method.stream[t] join the pool; the current model (θ_{t-1})
embeds every live pool sample by its projected LoRA gradient and scores it; a selection of
``budget`` samples is trained on (LoRA + connector, one pass by default); the pool is then pruned to
``capacity``; every task of the stream is evaluated (a row of the accuracy matrix). Each step is a
resumable phase (workdir/step_<t>/) whose selection and pool state are saved next to it.

config.method.approach:
  adapt_inf   gradient clusters, scorer per cluster by histogram entropy, CCS, SemDeDup pruning
  random      uniform random selection of the same budget, random pruning to the same capacity
  scorer      one scorer (method.scorer) everywhere, cluster budgets + CCS, random pruning
  all         no selection: the whole pool every step, no pruning
  sequential  no pool: a random budget-sized subset of the new datasets only
  joint       one multi-task run on all data of the stream (the reference for relative gain)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from typing import Any

import jax
import numpy as np
from flax import linen as nn

from jaxlvlm.data.composition import DataPool
from jaxlvlm.data.pipeline import make_train_iterator, sources_from_config
from jaxlvlm.methods import adapt_inf as ai
from jaxlvlm.methods.adapt_inf.model_features import batch_features
from jaxlvlm.runners import _plots
from jaxlvlm.runners._phase import run_phase, scores_vector
from jaxlvlm.runners.continual import (
    _base_params,
    _base_scores,
    _phase_config,
    _specs_of,
    check_base_lr,
)
from jaxlvlm.runners.registry import register_runner

APPROACHES = ("adapt_inf", "random", "scorer", "all", "sequential", "joint")
FROZEN = ("vision/.*", "llm/.*")  # LoRA + connector are trained

METHOD_DEFAULTS: dict[str, Any] = dict(
    approach="adapt_inf",
    scorer="log_perplexity",  # for approach 'scorer'; a name in adapt_inf.SCORER_NAMES
    stream=(),  # ((task, ...), ...): the tasks whose data.sources join the pool at each step
    budget=64,  # samples trained per step
    capacity=0,  # pool size kept after pruning; 0 = 4 * budget
    epochs=1,  # passes over the selection per step
    num_clusters=4,
    kmeans_iters=20,
    minibatch_threshold=20000,  # pools larger than this use mini-batch k-means
    minibatch_size=2048,
    proj_dim=512,
    block_k=128,
    block_p=16384,
    grad_layer=-1,  # decoder layer whose LoRA gradients embed the samples (-1 = last)
    feature_batch=16,
    grad_mode="vmap",  # per-sample grads: 'vmap' (vmap(grad)) or 'mixture' (one pass, LoRA copies)
    base_steps=0,
    base_sources=(),
    base_lr=0.0,  # learning rate of the base phase; 0 = optim.lr (one base shared by all approaches)
    evaluate_base=True,
    joint_summary="",  # a joint run's summary.json, for the relative gain
)


def method_settings(config) -> dict[str, Any]:
    """config.method over METHOD_DEFAULTS; unknown keys or values raise, naming them."""
    given = config.method.to_dict() if hasattr(config.method, "to_dict") else dict(config.method)
    unknown = sorted(set(given) - set(METHOD_DEFAULTS))
    if unknown:
        raise ValueError(
            f"config.method: unknown keys {unknown} for mode 'lifelong'; known: {sorted(METHOD_DEFAULTS)}"
        )
    m = {**METHOD_DEFAULTS, **given}
    if m["approach"] not in APPROACHES:
        raise ValueError(f"config.method.approach={m['approach']!r}: choose one of {APPROACHES}")
    if m["scorer"] not in ai.SCORER_NAMES:
        raise ValueError(f"config.method.scorer={m['scorer']!r}: choose one of {ai.SCORER_NAMES}")
    if not m["stream"]:
        raise ValueError("config.method.stream is empty: give the tasks joining at each step")
    check_base_lr(m)
    if m["budget"] <= 0:
        raise ValueError(f"config.method.budget must be positive, got {m['budget']}")
    m["stream"] = [list(step) for step in m["stream"]]
    m["capacity"] = int(m["capacity"]) or 4 * int(m["budget"])
    return m


def _all_tasks(m) -> list[str]:
    tasks = [t for step in m["stream"] for t in step]
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"config.method.stream repeats a task: {m['stream']}")
    return tasks


@dataclasses.dataclass
class PoolState:
    """Host-side pool bookkeeping: the pool itself and which of its rows are still alive."""

    pool: DataPool
    alive: np.ndarray  # [len(pool)] bool
    step_of: np.ndarray  # [len(pool)] the step each row joined


def _add_step_data(config, pool_state: PoolState, step_tasks, tasks, step: int, image_size: int):
    for task in step_tasks:
        specs = _specs_of(config, task)
        for ts in sources_from_config(specs, tasks, config.seed, image_size):
            rows = pool_state.pool.add(ts.source, tasks.index(task), name=task)
            pool_state.alive = np.concatenate([pool_state.alive, np.ones(len(rows), bool)])
            pool_state.step_of = np.concatenate([pool_state.step_of, np.full(len(rows), step)])


# ----------------------------------------------------------------------------- features


def pool_features(
    run, params, lora, indices: np.ndarray, pool: DataPool, m, alpha: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Streams the pool rows ``indices`` through batch_features.

    Returns (U [n', k], scores [S, n'], seen [n] bool): rows in ``indices`` order, n' = the rows
    that got features (a row skipped as a bad sample gets none). Host memory: n * (k + S) floats.
    """
    data_cfg = dataclasses.replace(
        run.data_cfg, shuffle=False, num_epochs=1, global_batch_size=m["feature_batch"]
    )
    source = pool.subset(indices)
    it = make_train_iterator(data_cfg, run.tokenizer, run.image_cfg, None, seed, sources=[source])
    num_layers = run.model_cfg.text.num_layers
    layer = m["grad_layer"] % num_layers
    fn = jax.jit(
        functools.partial(
            batch_features,
            run.model,
            layer=layer,
            alpha=alpha,
            dim=m["proj_dim"],
            image_token_id=run.model_cfg.image_token_id,
            block_k=m["block_k"],
            block_p=m["block_p"],
            grad_mode=m["grad_mode"],
        )
    )
    key = jax.random.PRNGKey(seed)  # the same Π for every batch of this step
    position = {int(g): i for i, g in enumerate(indices)}
    u_all = np.zeros((len(indices), m["proj_dim"]), np.float32)
    s_all = np.zeros((len(ai.SCORER_NAMES), len(indices)), np.float32)
    seen = np.zeros(len(indices), bool)
    with run.mesh, nn.logical_axis_rules(list(run.rules)):
        for batch in it:
            u, scores = fn(params, lora, batch, key)
            u, scores = np.asarray(u), {k: np.asarray(v) for k, v in scores.items()}
            for r, g in enumerate(batch["sample_index"]):
                if g < 0:
                    continue  # padding row
                i = position[int(g)]
                u_all[i] = u[r]
                s_all[:, i] = [scores[name][r] for name in ai.SCORER_NAMES]
                seen[i] = True
    if not seen.all():
        # Bad samples skipped by the pipeline (data.on_bad_sample='skip'): they leave the pool,
        # counted and named in the log, instead of ending the run.
        missing = [int(indices[i]) for i in np.flatnonzero(~seen)[:5]]
        logging.warning(
            "%d pool rows got no features and leave the pool (e.g. %s)",
            int((~seen).sum()),
            [pool.location(g) for g in missing],
        )
    return u_all[seen], s_all[:, seen], seen


def cluster_pool(
    u: np.ndarray, m, seed: int, init_centroids: np.ndarray | None = None
) -> tuple[ai.KMeansState, np.ndarray]:
    """k-means (full batch, or mini-batch for large pools) -> (state with centroids, labels [n]).

    init_centroids [K, d]: the previous step's centroids (kept in the train state's method_state),
    so cluster identities carry over as the pool grows; None = k-means++.
    """
    n = len(u)
    k = min(m["num_clusters"], n)
    key = jax.random.PRNGKey(seed)
    warm = init_centroids is not None and init_centroids.shape == (k, u.shape[1])
    if n <= m["minibatch_threshold"]:
        if not warm:
            state, labels, _ = ai.kmeans(u, np.ones(n, bool), k, m["kmeans_iters"], key)
            return state, np.asarray(labels)
        state = ai.init_state(init_centroids)
        for _ in range(m["kmeans_iters"]):
            state, _ = ai.lloyd_step(state, u, np.ones(n, bool))
        return state, np.asarray(ai.assign(u, state.centroids)[0])
    bs = m["minibatch_size"]
    rng = np.random.default_rng(seed)
    first = rng.choice(n, size=min(n, bs), replace=False)
    seeds = (
        init_centroids if warm else ai.kmeans_plusplus(u[first], np.ones(len(first), bool), k, key)
    )
    state = ai.init_state(seeds)
    for _ in range(m["kmeans_iters"]):
        perm = rng.permutation(n)
        for start in range(0, n - bs + 1, bs):  # full batches only: one compiled shape
            state = ai.minibatch_step(state, u[perm[start : start + bs]], np.ones(bs, bool))
    labels = np.concatenate(
        [np.asarray(ai.assign(u[s : s + bs], state.centroids)[0]) for s in range(0, n, bs)]
    )
    return state, labels


def prune_semdedup(
    u: np.ndarray, labels: np.ndarray, num_clusters: int, capacity: int
) -> np.ndarray:
    """Keep mask [n] of SemDeDup, computed cluster by cluster (one cluster's rows at a time)."""
    sizes = np.bincount(labels, minlength=num_clusters)
    budgets = np.asarray(ai.cluster_budgets(sizes, capacity))
    keep = np.zeros(len(u), bool)
    for c in range(num_clusters):
        rows = np.flatnonzero(labels == c)  # pool (arrival) order
        if len(rows) == 0 or budgets[c] == 0:
            continue
        pad = 1 << max(int(len(rows) - 1).bit_length(), 3)  # few compiled shapes
        e = np.zeros((pad, u.shape[1]), np.float32)
        e[: len(rows)] = u[rows]
        valid = np.arange(pad) < len(rows)
        kept = ai.keep_least_redundant(
            ai.cluster_redundancy(e, np.zeros(pad, np.int32), valid),
            np.zeros(pad, np.int32),
            valid,
            1,
            int(budgets[c]),
        )
        keep[rows] = np.asarray(kept)[: len(rows)]
    return keep


# ----------------------------------------------------------------------------- one step


def select_step(approach, m, u, scores, alive_idx, new_idx, seed, init_centroids=None):
    """The pool rows to train on (global indices) and, for adapt_inf, the cluster labels."""
    budget = m["budget"]
    key = jax.random.PRNGKey(seed)
    if approach == "all":
        return alive_idx, None, {}
    if approach == "sequential":
        chosen = ai.random_select(np.ones(len(new_idx), bool), budget, key)
        return new_idx[np.asarray(chosen)], None, {}
    if approach == "random":
        chosen = ai.random_select(np.ones(len(alive_idx), bool), budget, key)
        return alive_idx[np.asarray(chosen)], None, {}
    kstate, labels = cluster_pool(u, m, seed, init_centroids)
    k = kstate.centroids.shape[0]
    fixed = ai.SCORER_NAMES.index(m["scorer"]) if approach == "scorer" else -1
    sel, chosen, budgets = ai.select_samples(
        scores, labels, np.ones(len(alive_idx), bool), k, budget, key, fixed_scorer=fixed
    )
    info = {
        "scorer_per_cluster": [ai.SCORER_NAMES[int(c)] for c in np.asarray(chosen)],
        "budget_per_cluster": np.asarray(budgets).tolist(),
        "cluster_sizes": np.bincount(labels, minlength=k).tolist(),
        "centroids": np.asarray(kstate.centroids),
    }
    return alive_idx[np.asarray(sel)], labels, info


def prune_step(approach, m, u, labels, alive_idx, seed) -> np.ndarray:
    """Alive global indices after pruning to capacity."""
    cap = m["capacity"]
    if approach in ("all", "sequential") or len(alive_idx) <= cap:
        return alive_idx
    if approach == "adapt_inf":
        k = int(labels.max()) + 1
        return alive_idx[prune_semdedup(u, labels, k, cap)]
    keep = ai.random_select(np.ones(len(alive_idx), bool), cap, jax.random.PRNGKey(seed + 7))
    return alive_idx[np.asarray(keep)]


@register_runner("lifelong")
def run_lifelong(config, workdir: str) -> dict:
    """Runs the stream (resuming step by step) and writes report.md / summary.json."""
    m = method_settings(config)
    tasks = _all_tasks(m)
    approach = m["approach"]
    os.makedirs(workdir, exist_ok=True)
    base_params = _base_params(config, workdir, tasks, m)
    b = _base_scores(config, workdir, tasks, base_params, m)
    if approach == "joint":
        return _run_joint(config, workdir, tasks, base_params, b, m)
    pool_state = PoolState(DataPool(), np.zeros(0, bool), np.zeros(0, np.int64))
    a = np.full((len(m["stream"]), len(tasks)), np.nan)
    params, lora, wall, log = base_params, None, 0.0, []
    centroids = None  # the previous step's k-means centroids (train state method_state)
    for t, step_tasks in enumerate(m["stream"]):
        step_dir = os.path.join(workdir, f"step_{t}")
        os.makedirs(step_dir, exist_ok=True)
        before = len(pool_state.pool)
        c0 = _phase_config(
            config, _specs_of(config, step_tasks[0]), 1, tasks, freeze=FROZEN, lora=True
        )
        from jaxlvlm.train import trainer as TR

        run = TR.prepare_run(c0, step_dir)
        _add_step_data(config, pool_state, step_tasks, tasks, t, run.image_cfg.image_size)
        new_idx = np.arange(before, len(pool_state.pool))
        alive_idx = np.flatnonzero(pool_state.alive)
        sel_path = os.path.join(step_dir, "selection.npz")
        if os.path.exists(sel_path):
            saved = np.load(sel_path)
            selected, alive_after = saved["selected"], saved["alive_after"]
            centroids = saved["centroids"]
            info = json.load(open(os.path.join(step_dir, "selection.json")))
        else:
            u = scores = None
            skipped = 0
            if approach in ("adapt_inf", "scorer"):
                cur_lora = lora if lora is not None else _fresh_lora(config, run)
                u, scores, seen = pool_features(
                    run,
                    params,
                    cur_lora,
                    alive_idx,
                    pool_state.pool,
                    m,
                    config.lora.alpha,
                    config.seed + 100 + t,
                )
                alive_idx, skipped = alive_idx[seen], int((~seen).sum())
            selected, labels, info = select_step(
                approach, m, u, scores, alive_idx, new_idx, config.seed + 200 + t, centroids
            )
            alive_after = prune_step(approach, m, u, labels, alive_idx, config.seed + 300 + t)
            info["skipped_bad_samples"] = skipped
            centroids = info.pop("centroids", None)
            centroids = np.zeros((0,), np.float32) if centroids is None else centroids
            if jax.process_index() == 0:
                np.savez(sel_path, selected=selected, alive_after=alive_after, centroids=centroids)
                with open(os.path.join(step_dir, "selection.json"), "w") as f:
                    json.dump(info, f, indent=1)
        steps = max(1, math.ceil(m["epochs"] * len(selected) / config.data.global_batch_size))
        c = _phase_config(
            config, _specs_of(config, step_tasks[0]), steps, tasks, freeze=FROZEN, lora=True
        )
        init = (lambda r, lo=lora: lo) if lora is not None else None
        res = run_phase(
            c,
            step_dir,
            init_params=params,
            lora_init=init,
            # orbax cannot save empty arrays: baselines without clusters carry no centroids.
            method_state={"kmeans_centroids": centroids} if np.size(centroids) else None,
            train_sources=[pool_state.pool.subset(np.sort(selected))],
        )
        params, lora = res.state.params, res.state.lora
        kept = (res.state.method_state or {}).get("kmeans_centroids")
        centroids = np.asarray(kept) if kept is not None else None
        a[t] = scores_vector(res.scores, tasks)
        wall += res.wall_s
        pool_state.alive[:] = False
        pool_state.alive[alive_after] = True
        per_task = np.bincount(
            [pool_state.pool.task_id_of(g) for g in selected], minlength=len(tasks)
        )
        log.append(
            {
                "step": t,
                "new": step_tasks,
                "pool_before": int(len(alive_idx)),
                "selected": int(len(selected)),
                "train_steps": steps,
                "pool_after": int(len(alive_after)),
                "selected_per_task": dict(zip(tasks, per_task.tolist(), strict=True)),
                **info,
            }
        )
        logging.info("lifelong step %d: %s", t, log[-1])
    summary = _summary(m, tasks, a, b, wall, log, approach)
    return {"summary": summary, "report": write_lifelong_report(workdir, summary)}


def _fresh_lora(config, run):
    """The LoRA a step-0 phase would start from (B = 0: only B carries gradient at first)."""
    from jaxlvlm.train.lora import init_lora

    rng = jax.random.split(jax.random.PRNGKey(config.seed), 3)[1]
    return init_lora(rng, run.model_cfg.text, list(config.lora.targets), config.lora.rank)


def _run_joint(config, workdir, tasks, base_params, b, m):
    sources = [s for t in tasks for s in _specs_of(config, t)]
    total = sum(int(dict(s).get("num", 0)) for s in sources)
    steps = max(1, math.ceil(m["epochs"] * total / config.data.global_batch_size))
    c = _phase_config(config, sources, steps, tasks, freeze=FROZEN, lora=True)
    res = run_phase(c, os.path.join(workdir, "joint"), init_params=base_params, need_state=False)
    final = scores_vector(res.scores, tasks)
    summary = {
        "approach": "joint",
        "tasks": tasks,
        "final": final.tolist(),
        "base": None if b is None else np.asarray(b).tolist(),
        "ACC": float(final.mean()),
        "train_steps": steps,
        "wall_s": res.wall_s,
    }
    return {"summary": summary, "report": write_lifelong_report(workdir, summary)}


def lifelong_metrics(a: np.ndarray, appear: np.ndarray) -> dict[str, float]:
    """Metrics of a [steps, tasks] accuracy matrix where task i joins at step appear[i].

    ACC: mean of the last row. F: mean over tasks that joined before the last step of
    (best score from their joining step up to the step before last) - last score.
    """
    last = a[-1]
    forget = [
        np.max(a[appear[i] : len(a) - 1, i]) - last[i]
        for i in range(a.shape[1])
        if appear[i] < len(a) - 1
    ]
    return {"ACC": float(last.mean()), "F": float(np.mean(forget)) if forget else 0.0}


def _summary(m, tasks, a, b, wall, log, approach) -> dict:
    appear = np.asarray([next(s for s, st in enumerate(m["stream"]) if t in st) for t in tasks])
    metrics = lifelong_metrics(a, appear)
    if m["joint_summary"] and os.path.exists(m["joint_summary"]):
        from jaxlvlm.eval.continual_metrics import relative_gain

        with open(m["joint_summary"]) as f:
            ref = np.asarray(json.load(f)["final"])
        # A task the joint model scores 0 on has no defined ratio: RG is over the others.
        scored = ref > 0
        if scored.any():
            metrics["RG"] = float(relative_gain(a[-1][scored], ref[scored]))
            metrics["RG_tasks"] = int(scored.sum())
    return {
        "approach": approach,
        "tasks": tasks,
        "stream": m["stream"],
        "matrix": a.tolist(),
        "base": None if b is None else np.asarray(b).tolist(),
        "metrics": metrics,
        "budget": m["budget"],
        "capacity": m["capacity"],
        "steps": log,
        "wall_s": wall,
    }


def write_lifelong_report(workdir: str, s: dict) -> str | None:
    """report.md + summary.json in the workdir (process 0)."""
    if jax.process_index() != 0:
        return None
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(s, f, indent=1)
    lines = [f"# jaxlvlm: lifelong instruction tuning ({s['approach']})", ""]
    if "matrix" in s:
        lines += [f"Budget {s['budget']} samples per step, pool capacity {s['capacity']}.", ""]
        lines += _plots.markdown_table(list(s["metrics"]), [list(s["metrics"].values())]) + [""]
        lines += ["## Scores after each step (0-100)", ""]
        lines += _plots.markdown_table(
            ["after step", *s["tasks"]], [[i, *row] for i, row in enumerate(s["matrix"])]
        ) + [""]
        lines += ["## Steps", ""]
        for st in s["steps"]:
            lines.append(
                f"- step {st['step']} (+{', '.join(st['new'])}): pool {st['pool_before']} -> trained on "
                f"{st['selected']} ({st['train_steps']} steps) -> pool {st['pool_after']}; "
                f"per task {st['selected_per_task']}"
                + (f"; scorers {st['scorer_per_cluster']}" if "scorer_per_cluster" in st else "")
            )
    else:
        lines += _plots.markdown_table(["", *s["tasks"], "ACC"], [["joint", *s["final"], s["ACC"]]])
    lines += ["", f"Training + evaluation time: {s['wall_s']:.1f} s", ""]
    path = os.path.join(workdir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


__all__ = ["lifelong_metrics", "pool_features", "prune_semdedup", "run_lifelong"]
