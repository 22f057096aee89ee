"""Adapt-inf's selection pipeline over a growing pool (docs/methods.md section 3), step by step.

At time step t the new datasets join the pool; the current model embeds every live sample by its
projected LoRA gradient and scores it (``pool_features``); k-means groups the samples into
pseudo-skill clusters (``cluster_pool``); a scorer per cluster and per-cluster budgets choose what to
train on (``select_step``); the pool is then pruned to its capacity (``prune_step``, SemDeDup for
Adapt-inf). The baselines (random, one scorer, all, sequential) share the same entry points.
Host-side orchestration around the jitted pure functions of this package.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np

from jaxlvlm import sharding as shd
from jaxlvlm.data.composition import DataPool
from jaxlvlm.data.pipeline import make_train_iterator, sources_from_config
from jaxlvlm.methods.adapt_inf.cluster_report import task_cluster_counts
from jaxlvlm.methods.adapt_inf.clustering import ClusterResult, cluster_step
from jaxlvlm.methods.adapt_inf.elbow import format_elbow, resolve_num_clusters
from jaxlvlm.methods.adapt_inf.model_features import batch_features
from jaxlvlm.methods.adapt_inf.scorers import SCORER_NAMES
from jaxlvlm.methods.adapt_inf.select_pool import select_pool
from jaxlvlm.methods.adapt_inf.selection import cluster_budgets, random_select
from jaxlvlm.methods.adapt_inf.semdedup import cluster_redundancy, keep_least_redundant
from jaxlvlm.methods.adapt_inf.settings import LifelongSettings
from jaxlvlm.train.lora import init_lora
from jaxlvlm.train.phase_config import task_specs

FROZEN = ("vision/.*", "llm/.*")  # LoRA + connector are trained


@dataclasses.dataclass
class PoolState:
    """Host-side pool bookkeeping: the pool itself and which of its rows are still alive."""

    pool: DataPool
    alive: np.ndarray  # [len(pool)] bool

    @classmethod
    def empty(cls) -> PoolState:
        return cls(DataPool(), np.zeros(0, bool))

    def add_step_data(self, config, step_tasks, tasks, image_size: int) -> np.ndarray:
        """Adds the data.sources of ``step_tasks``; returns the new rows' global indices."""
        before = len(self.pool)
        for task in step_tasks:
            specs = task_specs(config, task)
            for ts in sources_from_config(specs, tasks, config.seed, image_size):
                rows = self.pool.add(ts.source, tasks.index(task), name=task)
                self.alive = np.concatenate([self.alive, np.ones(len(rows), bool)])
        return np.arange(before, len(self.pool))


def fresh_lora(config, model_cfg):
    """The LoRA a step-0 phase starts from (B = 0: only B carries gradient at first)."""
    rng = jax.random.split(jax.random.PRNGKey(config.seed), 3)[1]
    return init_lora(rng, model_cfg.text, list(config.lora.targets), config.lora.rank)


def projection_key(s: LifelongSettings) -> np.ndarray:
    """The key data (uint32 [2]) of the ONE Rademacher projection of the whole stream: sample
    vectors of every step live in the same random space (the authors' grad_utils.py
    ``collect_grads`` builds its projector with seed 0 for every extraction)."""
    return np.asarray(jax.random.key_data(jax.random.PRNGKey(s.projection_seed)))


def pool_features(
    run, params, lora, indices: np.ndarray, pool: DataPool, s: LifelongSettings, alpha: float, key
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Streams the pool rows ``indices`` through batch_features with the stream's projection
    ``key`` (projection_key).

    Returns (U [n', k], scores [S, n'], seen [n] bool): rows in ``indices`` order, n' = the rows
    that got features (a row skipped as a bad sample gets none). Host memory: n * (k + S) floats.
    """
    data_cfg = dataclasses.replace(
        run.data_cfg, shuffle=False, num_epochs=1, global_batch_size=s.feature_batch
    )
    source = pool.subset(indices)
    it = make_train_iterator(data_cfg, run.tokenizer, run.image_cfg, None, 0, sources=[source])
    layer = s.grad_layer % run.model_cfg.text.num_layers
    fn = jax.jit(
        functools.partial(
            batch_features,
            run.model,
            layer=layer,
            alpha=alpha,
            dim=s.proj_dim,
            image_token_id=run.model_cfg.image_token_id,
            block_k=s.block_k,
            block_p=s.block_p,
            grad_mode=s.grad_mode,
            image_grounding=s.image_grounding,
        )
    )
    key = jnp.asarray(key, jnp.uint32)  # raw key data [2]: the legacy PRNG key batch_features takes
    position = {int(g): i for i, g in enumerate(indices)}
    u_all = np.zeros((len(indices), s.proj_dim), np.float32)
    s_all = np.zeros((len(SCORER_NAMES), len(indices)), np.float32)
    seen = np.zeros(len(indices), bool)
    with shd.mesh_context(run.mesh, run.rules):
        for batch in it:
            u, scores = fn(params, lora, batch, key)
            u, scores = np.asarray(u), {k: np.asarray(v) for k, v in scores.items()}
            for r, g in enumerate(batch["sample_index"]):
                if g < 0:
                    continue  # padding row
                i = position[int(g)]
                u_all[i] = u[r]
                s_all[:, i] = [scores[name][r] for name in SCORER_NAMES]
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


def cluster_pool(u: np.ndarray, s: LifelongSettings, seed: int) -> tuple[ClusterResult, dict]:
    """This step's pseudo-skill clusters, as the authors' ``cluster`` (data_selection/adapt-inf.py):
    a fresh k-means++ seeding every step, K from the settings or the elbow, never an empty
    cluster (an empty one is re-seeded at the farthest point and the event counted).

    Returns (ClusterResult with labels [n] and sizes [K], info for the report: K, sizes,
    re-seeds per cluster, the elbow curve lines when K was chosen by the elbow).
    """
    valid = np.ones(len(u), bool)
    key = jax.random.PRNGKey(seed)
    sel = s.selection
    k, curve = resolve_num_clusters(u, valid, sel, key)
    res = cluster_step(u, valid, k, key, iters=sel.kmeans_iters, batch_size=sel.kmeans_batch)
    reseeds = np.asarray(res.reseeds).tolist()
    if any(reseeds):
        logging.warning("k-means re-seeded empty clusters (times per cluster): %s", reseeds)
    info = {"num_clusters": int(k), "reseeds": reseeds}
    if curve is not None:
        info["elbow"] = format_elbow(curve)
        logging.info("elbow (K chosen: %d):\n%s", k, "\n".join(info["elbow"]))
    return res, info


def prune_semdedup(
    u: np.ndarray, labels: np.ndarray, num_clusters: int, capacity: int, rule: str = "code"
) -> np.ndarray:
    """Keep mask [n] of SemDeDup, computed cluster by cluster (one cluster's rows at a time);
    the capacity is split over the clusters by ``rule`` (selection.cluster_budgets)."""
    sizes = np.bincount(labels, minlength=num_clusters)
    budgets = np.asarray(cluster_budgets(sizes, capacity, rule=rule))
    keep = np.zeros(len(u), bool)
    for c in range(num_clusters):
        rows = np.flatnonzero(labels == c)  # pool (arrival) order
        if len(rows) == 0 or budgets[c] == 0:
            continue
        pad = 1 << max(int(len(rows) - 1).bit_length(), 3)  # few compiled shapes
        e = np.zeros((pad, u.shape[1]), np.float32)
        e[: len(rows)] = u[rows]
        valid = np.arange(pad) < len(rows)
        zeros = np.zeros(pad, np.int32)
        kept = keep_least_redundant(
            cluster_redundancy(e, zeros, valid), zeros, valid, 1, int(budgets[c])
        )
        keep[rows] = np.asarray(kept)[: len(rows)]
    return keep


def select_step(
    s: LifelongSettings, u, scores, alive_idx, new_idx, seed, task_ids=None, num_tasks=0
):
    """(pool rows to train on as global indices, cluster labels or None, info for the report).

    scores [len(SCORER_NAMES), n]; task_ids [n]: each row's task, for the task x cluster table.
    """
    key = jax.random.PRNGKey(seed)
    if s.approach == "all":
        return alive_idx, None, {}
    if s.approach == "sequential":
        chosen = random_select(np.ones(len(new_idx), bool), s.budget, key)
        return new_idx[np.asarray(chosen)], None, {}
    if s.approach == "random":
        chosen = random_select(np.ones(len(alive_idx), bool), s.budget, key)
        return alive_idx[np.asarray(chosen)], None, {}
    res, info = cluster_pool(u, s, seed)
    k, labels = int(info["num_clusters"]), np.asarray(res.labels)
    sel_settings = s.selection
    if s.approach == "scorer":  # one scorer everywhere: the pool of one
        sel_settings = dataclasses.replace(sel_settings, scorers=(s.scorer,))
    by_name = {name: scores[i] for i, name in enumerate(SCORER_NAMES)}
    valid = np.ones(len(alive_idx), bool)
    sel = select_pool(by_name, labels, valid, k, s.budget, key, sel_settings)
    info.update(
        scorer_per_cluster=[sel_settings.scorers[int(c)] for c in np.asarray(sel.scorer)],
        budget_per_cluster=np.asarray(sel.budgets).tolist(),
        taken_per_cluster=np.asarray(sel.taken).tolist(),
        cluster_sizes=np.asarray(res.sizes).tolist(),
    )
    if task_ids is not None:
        counts = task_cluster_counts(np.asarray(task_ids), labels, valid, num_tasks, k)
        info["task_cluster_counts"] = np.asarray(counts).tolist()
    return alive_idx[np.flatnonzero(np.asarray(sel.selected))], labels, info


def prune_step(s: LifelongSettings, u, labels, alive_idx, seed) -> np.ndarray:
    """Alive global indices after pruning to the pool's capacity."""
    cap = s.pool_capacity
    if s.approach in ("all", "sequential") or len(alive_idx) <= cap:
        return alive_idx
    if s.approach == "adapt_inf":
        k = int(labels.max()) + 1
        return alive_idx[prune_semdedup(u, labels, k, cap, s.selection.budget_rule)]
    keep = random_select(np.ones(len(alive_idx), bool), cap, jax.random.PRNGKey(seed + 7))
    return alive_idx[np.asarray(keep)]


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
