"""The pool's fast hook (gathered top-M entries + batch-shared contextual part) against the
all-entries reference: same logits through a decoder and same gradients for a, b and u."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlvlm.methods import prompt_pool as pp
from jaxlvlm.models.config import RuntimeConfig, TextConfig
from jaxlvlm.models.decoder import CausalLM
from jaxlvlm.models.lowrank import GatheredFactors, LowRankFactors

TEXT = TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4)
BATCH, SEQ = 3, 10


def _cfg(**kw):
    base = dict(
        pool_size=6, top_m=2, rank=2, embed_dim=5, num_layers=2, d_in=32, d_out=32, max_tasks=3
    )
    return pp.PoolConfig(**{**base, **kw})


def _state(cfg, finished=2):
    """A pool with non-zero b and u, and ``finished`` tasks snapshotted from earlier pools."""
    pool = pp.init_pool(jax.random.PRNGKey(0), cfg)
    mem = pp.init_memory(cfg)
    for t in range(finished):
        old = pp.init_pool(jax.random.PRNGKey(10 + t), cfg)
        old["b"] = 0.1 * jax.random.normal(jax.random.PRNGKey(20 + t), old["b"].shape)
        c = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(30 + t), (4, cfg.pool_size)))
        mem = pp.end_of_task_snapshot(old, pp.accumulate_coefficients(mem, c), cfg)
    pool["b"] = 0.1 * jax.random.normal(jax.random.PRNGKey(1), pool["b"].shape)
    pool["u"] = jnp.linspace(-0.5, 1.0, cfg.max_tasks)
    # half-way through the current task (used by include_current)
    mem = pp.accumulate_coefficients(mem, jnp.full((2, cfg.pool_size), 1.0 / cfg.pool_size))
    return pool, mem


def _selection(cfg, pool):
    e = jax.random.normal(jax.random.PRNGKey(5), (BATCH, cfg.embed_dim))
    idx, w, _ = pp.select_pool_entries(e, pool["keys"], cfg.top_m)
    return idx, w


def _model_and_inputs():
    model = CausalLM(config=TEXT, runtime=RuntimeConfig())
    ids = (jnp.arange(BATCH * SEQ, dtype=jnp.int32).reshape(BATCH, SEQ) * 7 + 1) % 64
    mask = (jnp.arange(SEQ)[None] < jnp.array([[10], [7], [4]])).astype(jnp.int32)
    params = model.init(jax.random.PRNGKey(2), ids[:1])["params"]
    return model, params, ids, mask


def _with_fold(hook, cfg, fold):
    parts = hook[cfg.target]
    return {
        cfg.target: tuple(
            p.replace(fold=fold) if isinstance(p, LowRankFactors) else p for p in parts
        )
    }


@pytest.mark.parametrize(
    "kw,num_active,fold",
    [
        ({}, None, "factors"),
        ({}, 2, "kernel"),
        ({"snapshot_entries": 3, "include_current": True}, 2, "auto"),
    ],
    ids=["all-slots-factors", "active-kernel", "K3-current-auto"],
)
def test_forward_equals_all_entries_reference(kw, num_active, fold):
    cfg = _cfg(**kw)
    pool, mem = _state(cfg)
    idx, w = _selection(cfg, pool)
    model, params, ids, mask = _model_and_inputs()
    fast = _with_fold(pp.pool_lowrank(pool, mem, idx, w, cfg, num_active), cfg, fold)
    parts = fast[cfg.target]
    assert isinstance(parts[0], GatheredFactors) and parts[0].a.shape == (2, BATCH, 2, 32, 2)
    ref = pp.pool_lowrank_reference(
        pool, mem, pp.selection_coefficients(idx, w, cfg.pool_size), cfg, num_active
    )
    run = jax.jit(lambda lr: model.apply({"params": params}, ids, mask, lowrank=lr))
    got, want = np.asarray(run(fast)), np.asarray(run(ref))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # The hook does something, and the contextual part matters (not only the selected entries).
    base = np.asarray(run(None))
    assert np.abs(want - base).max() > 1e-3
    only_intrinsic = np.asarray(run({cfg.target: parts[:1]}))
    assert np.abs(want - only_intrinsic).max() > 1e-4


def test_gradients_equal_all_entries_reference():
    cfg = _cfg()
    pool, mem = _state(cfg)
    idx, w = _selection(cfg, pool)
    model, params, ids, mask = _model_and_inputs()
    coeff = pp.selection_coefficients(idx, w, cfg.pool_size)

    def loss(p, fast, fold):
        if fast:
            lr = _with_fold(pp.pool_lowrank(p, mem, idx, w, cfg, 2), cfg, fold)
        else:
            lr = pp.pool_lowrank_reference(p, mem, coeff, cfg, 2)
        logits = model.apply({"params": params}, ids, mask, lowrank=lr)
        return jnp.sum(jax.nn.log_softmax(logits)[..., 3] * mask)

    grad = jax.jit(jax.grad(loss), static_argnums=(1, 2))
    want = grad(pool, False, "factors")
    for fold in ("factors", "kernel"):
        got = grad(pool, True, fold)
        for name in ("a", "b", "u"):
            np.testing.assert_allclose(
                np.asarray(got[name]), np.asarray(want[name]), rtol=1e-4, atol=1e-6, err_msg=name
            )
    used = np.zeros(cfg.pool_size, bool)
    used[np.unique(np.asarray(idx))] = True
    assert np.abs(np.asarray(want["a"])[:, used]).max() > 0 and not used.all()
    np.testing.assert_array_equal(np.asarray(got["a"])[:, ~used], 0.0)
    assert np.abs(np.asarray(want["u"])[:2]).min() > 0  # both finished tasks' weights learn


def test_no_contextual_part_before_the_first_finished_task():
    cfg = _cfg()
    pool, mem = _state(cfg, finished=0)
    idx, w = _selection(cfg, pool)
    parts = pp.pool_lowrank(pool, mem, idx, w, cfg, num_active=0)[cfg.target]
    assert len(parts) == 1 and isinstance(parts[0], GatheredFactors)
    np.testing.assert_array_equal(np.asarray(parts[0].a), np.asarray(pool["a"])[:, np.asarray(idx)])
