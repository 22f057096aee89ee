"""Continual LLaVA pool: selection, increments, snapshots and contextual sums vs numpy / by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlvlm.methods import prompt_pool as pp

CFG = pp.PoolConfig(
    pool_size=6, top_m=2, rank=3, embed_dim=5, num_layers=2, d_in=8, d_out=7, max_tasks=3
)


def _pool_with_nonzero_b(seed=0, cfg=CFG):
    pool = pp.init_pool(jax.random.PRNGKey(seed), cfg)
    pool["b"] = jax.random.normal(jax.random.PRNGKey(seed + 100), pool["b"].shape)
    return pool


def _np_select(e, keys, m):
    en = e / np.linalg.norm(e, axis=-1, keepdims=True)
    kn = keys / np.linalg.norm(keys, axis=-1, keepdims=True)
    s = en @ kn.T
    idx = np.argsort(-s, axis=1)[:, :m]
    top = np.take_along_axis(s, idx, axis=1)
    pos = np.maximum(top, 0)
    tot = pos.sum(1, keepdims=True)
    w = np.where(tot > 1e-8, pos / np.where(tot > 1e-8, tot, 1), 1.0 / m)
    return idx, w, s


def test_selection_matches_numpy():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(7, 5)).astype(np.float32)
    keys = rng.normal(size=(6, 5)).astype(np.float32)
    keys[0] = -e[3] * 2.0  # row 3: make several similarities negative
    idx, w, s = jax.jit(pp.select_pool_entries, static_argnums=2)(e, keys, 3)
    ridx, rw, rs = _np_select(e, keys, 3)
    np.testing.assert_allclose(s, rs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_allclose(w, rw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(w).sum(1), 1.0, rtol=1e-6)
    coeff = pp.selection_coefficients(idx, w, 6)
    dense = np.zeros((7, 6), np.float32)
    np.put_along_axis(dense, ridx, rw, axis=1)
    np.testing.assert_allclose(coeff, dense, rtol=1e-5, atol=1e-6)


def test_selection_all_negative_falls_back_to_uniform():
    e = np.array([[1.0, 0, 0, 0, 0]])
    keys = -np.eye(5, 5)[[0, 0, 0]] - 0.1  # every key points away from e
    _, w, _ = pp.select_pool_entries(e, keys, 2)
    np.testing.assert_allclose(w, [[0.5, 0.5]])


def _materialised(a, b, coeff):
    """Per-example dense delta [B, d_in, d_out] = sum_e coeff[b, e] a[e] @ b[e] (numpy, float64)."""
    a, b, coeff = (np.asarray(v, np.float64) for v in (a, b, coeff))
    return np.einsum("xe,eir,ero->xio", coeff, a, b)


def test_increment_equals_materialised_delta_with_context():
    pool = _pool_with_nonzero_b(1)
    mem = pp.init_memory(CFG)
    rng = np.random.default_rng(1)
    e = rng.normal(size=(4, 5)).astype(np.float32)
    idx, w, _ = pp.select_pool_entries(e, pool["keys"], CFG.top_m)
    coeff = pp.selection_coefficients(idx, w, CFG.pool_size)
    mem = pp.accumulate_coefficients(mem, coeff)
    mem = pp.end_of_task_snapshot(pool, mem, CFG)
    pool2 = _pool_with_nonzero_b(2)  # the pool moves on during task 2
    pool2["u"] = jnp.array([0.3, -1.0, 2.0])
    a, b, c = pp.pool_factors(pool2, mem, coeff, CFG)
    assert a.shape == (2, 6 + 3 * 6, 8, 3) and c.shape == (4, 24)
    x = rng.normal(size=(4, 5, 8)).astype(np.float32)
    for layer in range(CFG.num_layers):
        got = pp.lowrank_delta(x, a[layer], b[layer], c)
        dense = _materialised(a[layer], b[layer], c)
        want = np.einsum("xsi,xio->xso", x.astype(np.float64), dense)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        # and by the formula: own selection on the live pool + w_0 * alpha_bar on the frozen pool 1
        alpha = np.asarray(coeff).mean(0)
        ctx = np.einsum(
            "n,nir,nro->io", alpha, np.asarray(pool["a"][layer]), np.asarray(pool["b"][layer])
        )
        intr = _materialised(pool2["a"][layer], pool2["b"][layer], coeff)
        w0 = 1 / (1 + np.exp(-0.3))
        np.testing.assert_allclose(dense, intr + w0 * ctx[None], rtol=1e-4, atol=1e-5)


def test_snapshot_and_contextual_sums_by_hand():
    cfg = pp.PoolConfig(
        pool_size=4, top_m=2, rank=1, embed_dim=3, num_layers=1, d_in=2, d_out=2, max_tasks=2
    )
    pool = pp.init_pool(jax.random.PRNGKey(0), cfg)
    mem = pp.init_memory(cfg)
    # Two batches of task 0; the second has a padding row that must not count.
    c1 = jnp.array([[0.6, 0.4, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]])
    c2 = jnp.array([[0.0, 0.0, 0.3, 0.7], [1.0, 0.0, 0.0, 0.0]])
    mem = pp.accumulate_coefficients(mem, c1)
    mem = pp.accumulate_coefficients(mem, c2, row_mask=jnp.array([1.0, 0.0]))
    alpha = np.array([0.6, 0.9, 0.8, 0.7]) / 3
    np.testing.assert_allclose(pp.running_alpha(mem), alpha, rtol=1e-6)
    pool["a"] = jnp.arange(8.0).reshape(1, 4, 2, 1)
    pool["b"] = jnp.ones((1, 4, 1, 2))
    mem = pp.end_of_task_snapshot(pool, mem, cfg)
    assert int(mem["num_done"]) == 1 and float(mem["coeff_count"]) == 0.0
    np.testing.assert_allclose(mem["snap_alpha"][0], np.sort(alpha)[::-1], rtol=1e-6)
    np.testing.assert_array_equal(mem["snap_index"][0], [1, 2, 3, 0])
    np.testing.assert_array_equal(mem["snap_alpha"][1], 0.0)  # task 1 not finished: no context
    pool["u"] = jnp.array([1.0, 5.0])
    pool["a"] = pool["a"] * 0 + 100.0  # later changes must not leak into the frozen snapshot
    a_ctx, b_ctx, c_ctx = pp.contextual_entries(pool, mem, cfg)
    w0 = 1 / (1 + np.exp(-1.0))
    # contextual delta = w0 * sum_n alpha_n a_n b_n, a_n = [2n, 2n+1], b_n = [1, 1]
    want = w0 * sum(alpha[n] * np.outer([2 * n, 2 * n + 1], [1, 1]) for n in range(4))
    got = np.einsum("e,eir,ero->io", c_ctx, a_ctx[0], b_ctx[0])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_array_equal(c_ctx[4:], 0.0)


def test_snapshot_keeps_the_largest_entries_and_reports_dropped_mass():
    cfg = pp.PoolConfig(
        pool_size=4,
        top_m=1,
        rank=1,
        embed_dim=3,
        num_layers=1,
        d_in=2,
        d_out=2,
        max_tasks=2,
        snapshot_entries=2,
    )
    pool = pp.init_pool(jax.random.PRNGKey(0), cfg)
    mem = pp.accumulate_coefficients(pp.init_memory(cfg), jnp.array([[0.1, 0.5, 0.0, 0.4]]))
    np.testing.assert_allclose(pp.snapshot_dropped_mass(mem, cfg), 0.1, rtol=1e-5)
    mem = pp.end_of_task_snapshot(pool, mem, cfg)
    np.testing.assert_array_equal(mem["snap_index"][0], [1, 3])
    np.testing.assert_allclose(mem["snap_a"][0, 0], pool["a"][0, jnp.array([1, 3])])


def test_include_current_uses_running_mean_of_live_pool():
    cfg = pp.PoolConfig(
        pool_size=3,
        top_m=1,
        rank=2,
        embed_dim=3,
        num_layers=1,
        d_in=4,
        d_out=4,
        max_tasks=2,
        include_current=True,
    )
    pool = _pool_with_nonzero_b(3, cfg)
    mem = pp.accumulate_coefficients(
        pp.init_memory(cfg), jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    )
    a, b, c = pp.contextual_entries(pool, mem, cfg)
    assert c.shape == (2 * 3 + 3,)
    np.testing.assert_allclose(c[6:], 0.5 * np.array([0.0, 0.5, 0.5]), rtol=1e-6)  # sigmoid(0) = .5
    np.testing.assert_array_equal(a[:, 6:], pool["a"])


def test_gradients_reach_selected_entries_and_finished_task_weights_only():
    pool = _pool_with_nonzero_b(4)
    mem = pp.init_memory(CFG)
    coeff = jnp.zeros((2, 6)).at[0, 1].set(0.7).at[0, 4].set(0.3).at[1, 1].set(1.0)
    mem = pp.end_of_task_snapshot(pool, pp.accumulate_coefficients(mem, coeff), CFG)
    x = jnp.ones((2, 3, 8))

    def loss(p):
        a, b, c = pp.pool_factors(p, mem, coeff, CFG)
        return sum(jnp.sum(pp.lowrank_delta(x, a[i], b[i], c) ** 2) for i in range(2))

    g = jax.grad(loss)(pool)
    used = np.zeros(6, bool)
    used[[1, 4]] = True
    assert np.all(np.abs(np.asarray(g["a"])[:, used]).sum((0, 2, 3)) > 0)
    np.testing.assert_array_equal(np.asarray(g["a"])[:, ~used], 0.0)
    np.testing.assert_array_equal(np.asarray(g["b"])[:, ~used], 0.0)
    gu = np.asarray(g["u"])
    assert gu[0] != 0.0 and gu[1] == 0.0 and gu[2] == 0.0  # only task 0 is finished
    np.testing.assert_array_equal(g["keys"], 0.0)


def test_align_loss_value_and_gradient_on_selected_keys_only():
    rng = np.random.default_rng(5)
    e = rng.normal(size=(3, 5)).astype(np.float32)
    keys = rng.normal(size=(6, 5)).astype(np.float32)
    idx, _, s = pp.select_pool_entries(e, keys, 2)
    row_mask = jnp.array([1.0, 1.0, 0.0])
    loss = pp.align_loss(e, keys, idx, row_mask)
    want = np.mean([np.sum(1 - np.asarray(s)[r, np.asarray(idx)[r]]) for r in (0, 1)])
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    g = jax.grad(lambda k: pp.align_loss(e, k, idx, row_mask))(jnp.asarray(keys))
    selected = set(np.asarray(idx)[:2].ravel().tolist())
    for n in range(6):
        assert (np.abs(np.asarray(g[n])).sum() > 0) == (n in selected), n


def test_instruction_embedding_by_token_means():
    batch = {
        "input_ids": jnp.array([[5, 3, 3, 6, 7, 8, 0], [9, 10, 11, 0, 0, 0, 0]]),
        "attention_mask": jnp.array([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0, 0]]),
        # row 0: targets at k=3,4 are answer tokens -> input positions 4, 5; row 1: position 2
        "loss_mask": jnp.array([[0, 0, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0, 0]]),
    }
    m = pp.instruction_token_mask(batch, image_token_id=3)
    np.testing.assert_array_equal(m, [[1, 0, 0, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0]])
    table = jnp.arange(12 * 2, dtype=jnp.float32).reshape(12, 2)
    emb = pp.mean_token_embedding(table, batch["input_ids"], m)
    np.testing.assert_allclose(emb, [(table[5] + table[6]) / 2, (table[9] + table[10]) / 2])


def test_bad_config():
    with pytest.raises(ValueError, match="top_m"):
        pp.PoolConfig(pool_size=3, top_m=4)
    with pytest.raises(ValueError, match="snapshot_entries"):
        pp.PoolConfig(pool_size=3, top_m=1, snapshot_entries=5)


def test_pool_in_the_decoder_equals_the_materialised_o_proj_delta():
    """The pool through the model's hook == adding the dense delta to each layer's o_proj kernel."""
    from jaxlvlm.models.config import RuntimeConfig, TextConfig
    from jaxlvlm.models.decoder import CausalLM
    from jaxlvlm.models.lowrank import validate_lowrank

    text = TextConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4
    )
    cfg = pp.PoolConfig(
        pool_size=5, top_m=2, rank=2, embed_dim=6, num_layers=2, d_in=32, d_out=32, max_tasks=2
    )
    model = CausalLM(config=text, runtime=RuntimeConfig())
    ids = jnp.arange(1, 13, dtype=jnp.int32)[None] % 64
    params = model.init(jax.random.PRNGKey(0), ids)["params"]
    pool = _pool_with_nonzero_b(7, cfg)
    pool["b"] = pool["b"] * 0.1
    mem = pp.accumulate_coefficients(pp.init_memory(cfg), jnp.array([[0.2, 0.0, 0.8, 0.0, 0.0]]))
    mem = pp.end_of_task_snapshot(_pool_with_nonzero_b(8, cfg), mem, cfg)
    e = jax.random.normal(jax.random.PRNGKey(9), (1, 6))
    idx, w, _ = pp.select_pool_entries(e, pool["keys"], cfg.top_m)
    coeff = pp.selection_coefficients(idx, w, cfg.pool_size)
    lowrank = pp.pool_lowrank(pool, mem, idx, w, cfg)
    validate_lowrank(text, lowrank, batch_size=1)
    got = model.apply({"params": params}, ids, lowrank=lowrank)

    a, b, c = pp.pool_factors(pool, mem, coeff, cfg)
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    o_paths = [p for p, _ in leaves if "o_proj" in jax.tree_util.keystr(p)]
    assert len(o_paths) == 2
    dense_params = params
    for layer, path in enumerate(sorted(o_paths, key=jax.tree_util.keystr)):
        delta = np.einsum(
            "e,eir,ero->io", np.asarray(c[0]), np.asarray(a[layer]), np.asarray(b[layer])
        )

        def add(p, x, path=path, delta=delta):
            return x + delta.reshape(x.shape) if p == path else x

        dense_params = jax.tree_util.tree_map_with_path(add, dense_params)
    want = model.apply({"params": dense_params}, ids)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert float(jnp.max(jnp.abs(got - model.apply({"params": params}, ids)))) > 1e-4


def test_num_active_leaves_out_unfinished_slots_with_the_same_delta():
    pool = _pool_with_nonzero_b(11)
    mem = pp.init_memory(CFG)
    coeff = pp.selection_coefficients(jnp.array([[0, 3]]), jnp.array([[0.4, 0.6]]), CFG.pool_size)
    mem = pp.end_of_task_snapshot(pool, pp.accumulate_coefficients(mem, coeff), CFG)
    x = jax.random.normal(jax.random.PRNGKey(3), (1, 4, 8))
    full = pp.pool_factors(pool, mem, coeff, CFG)
    short = pp.pool_factors(pool, mem, coeff, CFG, num_active=1)
    assert short[0].shape[1] == 6 + 6 and full[0].shape[1] == 6 + 3 * 6
    for layer in range(CFG.num_layers):
        np.testing.assert_allclose(
            pp.lowrank_delta(x, short[0][layer], short[1][layer], short[2]),
            pp.lowrank_delta(x, full[0][layer], full[1][layer], full[2]),
            rtol=1e-5,
            atol=1e-6,
        )
    assert pp.pool_factors(pool, mem, coeff, CFG, num_active=0)[0].shape[1] == 6
    with pytest.raises(ValueError, match="num_active"):
        pp.pool_factors(pool, mem, coeff, CFG, num_active=4)
