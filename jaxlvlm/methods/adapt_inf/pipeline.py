"""Adapt-inf's selection pipeline over a growing pool (METHODS.md section 3), step by step.

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
import numpy as np
from flax import linen as nn

from jaxlvlm.data.composition import DataPool
from jaxlvlm.data.pipeline import make_train_iterator, sources_from_config
from jaxlvlm.methods.adapt_inf.kmeans import (
    KMeansState,
    assign,
    init_state,
    kmeans,
    kmeans_plusplus,
    lloyd_step,
    minibatch_step,
)
from jaxlvlm.methods.adapt_inf.model_features import batch_features
from jaxlvlm.methods.adapt_inf.scorers import SCORER_NAMES
from jaxlvlm.methods.adapt_inf.selection import cluster_budgets, random_select, select_samples
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
    step_of: np.ndarray  # [len(pool)] the step each row joined

    @classmethod
    def empty(cls) -> PoolState:
        return cls(DataPool(), np.zeros(0, bool), np.zeros(0, np.int64))

    def add_step_data(self, config, step_tasks, tasks, step: int, image_size: int) -> np.ndarray:
        """Adds the data.sources of ``step_tasks``; returns the new rows' global indices."""
        before = len(self.pool)
        for task in step_tasks:
            specs = task_specs(config, task)
            for ts in sources_from_config(specs, tasks, config.seed, image_size):
                rows = self.pool.add(ts.source, tasks.index(task), name=task)
                self.alive = np.concatenate([self.alive, np.ones(len(rows), bool)])
                self.step_of = np.concatenate([self.step_of, np.full(len(rows), step)])
        return np.arange(before, len(self.pool))


def fresh_lora(config, model_cfg):
    """The LoRA a step-0 phase starts from (B = 0: only B carries gradient at first)."""
    rng = jax.random.split(jax.random.PRNGKey(config.seed), 3)[1]
    return init_lora(rng, model_cfg.text, list(config.lora.targets), config.lora.rank)


def pool_features(
    run, params, lora, indices: np.ndarray, pool: DataPool, s: LifelongSettings, alpha: float, seed
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Streams the pool rows ``indices`` through batch_features.

    Returns (U [n', k], scores [S, n'], seen [n] bool): rows in ``indices`` order, n' = the rows
    that got features (a row skipped as a bad sample gets none). Host memory: n * (k + S) floats.
    """
    data_cfg = dataclasses.replace(
        run.data_cfg, shuffle=False, num_epochs=1, global_batch_size=s.feature_batch
    )
    source = pool.subset(indices)
    it = make_train_iterator(data_cfg, run.tokenizer, run.image_cfg, None, seed, sources=[source])
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
        )
    )
    key = jax.random.PRNGKey(seed)  # the same projection for every batch of this step
    position = {int(g): i for i, g in enumerate(indices)}
    u_all = np.zeros((len(indices), s.proj_dim), np.float32)
    s_all = np.zeros((len(SCORER_NAMES), len(indices)), np.float32)
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


def cluster_pool(
    u: np.ndarray, s: LifelongSettings, seed: int, init_centroids: np.ndarray | None = None
) -> tuple[KMeansState, np.ndarray]:
    """k-means (full batch, or mini-batch for large pools) -> (state with centroids, labels [n]).

    init_centroids [K, d]: the previous step's centroids (kept in the train state's method_state),
    so cluster identities carry over as the pool grows; None = k-means++.
    """
    n = len(u)
    k = min(s.num_clusters, n)
    key = jax.random.PRNGKey(seed)
    warm = init_centroids is not None and init_centroids.shape == (k, u.shape[1])
    if n <= s.minibatch_threshold:
        if not warm:
            state, labels, _ = kmeans(u, np.ones(n, bool), k, s.kmeans_iters, key)
            return state, np.asarray(labels)
        state = init_state(init_centroids)
        for _ in range(s.kmeans_iters):
            state, _ = lloyd_step(state, u, np.ones(n, bool))
        return state, np.asarray(assign(u, state.centroids)[0])
    bs = s.minibatch_size
    rng = np.random.default_rng(seed)
    first = rng.choice(n, size=min(n, bs), replace=False)
    seeds = init_centroids if warm else kmeans_plusplus(u[first], np.ones(len(first), bool), k, key)
    state = init_state(seeds)
    for _ in range(s.kmeans_iters):
        perm = rng.permutation(n)
        for start in range(0, n - bs + 1, bs):  # full batches only: one compiled shape
            state = minibatch_step(state, u[perm[start : start + bs]], np.ones(bs, bool))
    labels = np.concatenate(
        [np.asarray(assign(u[i : i + bs], state.centroids)[0]) for i in range(0, n, bs)]
    )
    return state, labels


def prune_semdedup(
    u: np.ndarray, labels: np.ndarray, num_clusters: int, capacity: int
) -> np.ndarray:
    """Keep mask [n] of SemDeDup, computed cluster by cluster (one cluster's rows at a time)."""
    sizes = np.bincount(labels, minlength=num_clusters)
    budgets = np.asarray(cluster_budgets(sizes, capacity))
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


def select_step(s: LifelongSettings, u, scores, alive_idx, new_idx, seed, init_centroids=None):
    """(pool rows to train on as global indices, cluster labels or None, info for the report)."""
    key = jax.random.PRNGKey(seed)
    if s.approach == "all":
        return alive_idx, None, {}
    if s.approach == "sequential":
        chosen = random_select(np.ones(len(new_idx), bool), s.budget, key)
        return new_idx[np.asarray(chosen)], None, {}
    if s.approach == "random":
        chosen = random_select(np.ones(len(alive_idx), bool), s.budget, key)
        return alive_idx[np.asarray(chosen)], None, {}
    kstate, labels = cluster_pool(u, s, seed, init_centroids)
    k = kstate.centroids.shape[0]
    fixed = SCORER_NAMES.index(s.scorer) if s.approach == "scorer" else -1
    sel, chosen, budgets = select_samples(
        scores, labels, np.ones(len(alive_idx), bool), k, s.budget, key, fixed_scorer=fixed
    )
    info = {
        "scorer_per_cluster": [SCORER_NAMES[int(c)] for c in np.asarray(chosen)],
        "budget_per_cluster": np.asarray(budgets).tolist(),
        "cluster_sizes": np.bincount(labels, minlength=k).tolist(),
        "centroids": np.asarray(kstate.centroids),
    }
    return alive_idx[np.asarray(sel)], labels, info


def prune_step(s: LifelongSettings, u, labels, alive_idx, seed) -> np.ndarray:
    """Alive global indices after pruning to the pool's capacity."""
    cap = s.pool_capacity
    if s.approach in ("all", "sequential") or len(alive_idx) <= cap:
        return alive_idx
    if s.approach == "adapt_inf":
        return alive_idx[prune_semdedup(u, labels, int(labels.max()) + 1, cap)]
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
