"""Per-example gathered low-rank hooks and batch-shared parts folded into the weight: both equal the
all-entries form and the materialised per-example delta, in values and in gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_decoder import GQA, random_params, right_padded, stack_layers

from jaxlvlm.models.config import RuntimeConfig
from jaxlvlm.models.decoder import CausalLM
from jaxlvlm.models.lowrank import (
    GatheredFactors,
    LowRankFactors,
    fold_into_kernel,
    lowrank_delta,
    lowrank_dims,
    should_fold,
)

POOL, M, RANK, BATCH = 6, 2, 3, 2
IDX = np.array([[4, 1], [0, 4]])  # row 1 and row 0 share entry 4: its gradient sums over both


def _pool(shape_in, shape_out, seed=0, layers=None):
    rng = np.random.RandomState(seed)
    lead = (POOL,) if layers is None else (layers, POOL)
    a = jnp.asarray(0.3 * rng.normal(size=(*lead, shape_in, RANK)), jnp.float32)
    b = jnp.asarray(0.3 * rng.normal(size=(*lead, RANK, shape_out)), jnp.float32)
    w = jnp.asarray(rng.uniform(0.2, 1.0, size=(BATCH, M)), jnp.float32)
    return a, b, w


def _dense_coeff(w):
    coeff = np.zeros((BATCH, POOL), np.float32)
    np.put_along_axis(coeff, IDX, np.asarray(w), axis=1)
    return jnp.asarray(coeff)


def _gathered(a, b, w, axis):
    return GatheredFactors(jnp.take(a, IDX, axis=axis), jnp.take(b, IDX, axis=axis), w)


def test_gathered_delta_equals_sparse_all_entries_form_and_materialised():
    a, b, w = _pool(5, 4)
    x = jnp.asarray(np.random.RandomState(1).normal(size=(BATCH, 3, 5)), jnp.float32)
    gathered = lowrank_delta(x, _gathered(a, b, w, axis=0))
    all_entries = lowrank_delta(x, LowRankFactors(a, b, _dense_coeff(w)))
    np.testing.assert_allclose(np.asarray(gathered), np.asarray(all_entries), rtol=0, atol=1e-6)
    an, bn, wn = (np.asarray(v, np.float64) for v in (a, b, w))
    for row in range(BATCH):
        dense = sum(wn[row, m] * an[IDX[row, m]] @ bn[IDX[row, m]] for m in range(M))
        want = np.asarray(x[row], np.float64) @ dense
        np.testing.assert_allclose(np.asarray(gathered[row]), want, rtol=0, atol=1e-5)


def test_gathered_gradients_equal_all_entries_gradients():
    a, b, w = _pool(5, 4, seed=2)
    x = jnp.asarray(np.random.RandomState(3).normal(size=(BATCH, 3, 5)), jnp.float32)
    probe = jnp.asarray(np.random.RandomState(4).normal(size=(BATCH, 3, 4)), jnp.float32)

    def via_gather(a, b, w):
        return jnp.sum(lowrank_delta(x, _gathered(a, b, w, axis=0)) * probe)

    def via_dense(a, b, w):
        coeff = jnp.zeros((BATCH, POOL)).at[jnp.arange(BATCH)[:, None], IDX].set(w)
        return jnp.sum(lowrank_delta(x, LowRankFactors(a, b, coeff)) * probe)

    g1 = jax.grad(via_gather, argnums=(0, 1, 2))(a, b, w)
    g2 = jax.grad(via_dense, argnums=(0, 1, 2))(a, b, w)
    for u, v in zip(g1, g2, strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=0, atol=1e-5)
    unused = [n for n in range(POOL) if n not in IDX]
    assert np.all(np.asarray(g1[0])[unused] == 0.0) and np.abs(np.asarray(g1[0])[4]).max() > 0


def test_should_fold_rule():
    # LoRA-sized ranks stay factors; a pool's contextual rank folds in training, not in decode.
    assert not should_fold(2048, 8, 512, 512)
    assert should_fold(2048, 160, 512, 512)
    assert should_fold(2048, 960, 512, 512)
    assert not should_fold(8, 960, 512, 512)


@pytest.mark.parametrize("fold", ["kernel", "factors"])
def test_fold_into_kernel_equals_factors(fold):
    a, b, _ = _pool(6, 4, seed=5)
    c = jnp.asarray(np.random.RandomState(6).uniform(0.1, 1.0, size=(POOL,)), jnp.float32)
    kernel = jnp.asarray(np.random.RandomState(7).normal(size=(2, 3, 4)), jnp.float32)
    x = jnp.asarray(np.random.RandomState(8).normal(size=(BATCH, 5, 6)), jnp.float32)
    shared = LowRankFactors(a, b, c, fold=fold)
    gathered = _gathered(a, b, jnp.ones((BATCH, M)), axis=0)
    merged, rest = fold_into_kernel(kernel, (gathered, shared), num_tokens=BATCH * 5)
    assert len(rest) == (1 if fold == "kernel" else 2) and rest[0] is gathered
    y = jnp.einsum("bsi,io->bso", x, merged.reshape(6, 4)) + lowrank_delta(x, rest)
    want = jnp.einsum("bsi,io->bso", x, kernel.reshape(6, 4)) + lowrank_delta(
        x, (gathered, shared.replace(fold="factors"))
    )
    np.testing.assert_allclose(np.asarray(y), np.asarray(want), rtol=0, atol=1e-5)


def _hooks(cfg, fold, seed=0):
    """o_proj: gathered top-M of a pool + a shared part; up_proj: gathered only."""
    out = {}
    for target in ("o_proj", "up_proj"):
        d_in, d_out = lowrank_dims(cfg)[target]
        a, b, w = _pool(d_in, d_out, seed=seed, layers=cfg.num_layers)
        parts = [_gathered(a, b, w, axis=1)]
        if target == "o_proj":
            c = jnp.linspace(0.2, 1.1, POOL)
            parts.append(LowRankFactors(a * 0.5, b, c, fold=fold))
        out[target] = tuple(parts)
        seed += 1
    return out


def _materialise(params, cfg, hooks, row):
    merged = jax.tree_util.tree_map(np.asarray, params)
    module = {"o_proj": "self_attn", "up_proj": "mlp"}
    for target, parts in hooks.items():
        for layer in range(cfg.num_layers):
            node = merged[f"layers_{layer}"][module[target]][target]
            delta = 0.0
            for p in parts:
                a, b, c = (np.asarray(v, np.float64) for v in (p.a[layer], p.b[layer], p.coeff))
                if isinstance(p, GatheredFactors):
                    delta = delta + np.einsum("m,mir,mro->io", c[row], a[row], b[row])
                else:
                    delta = delta + np.einsum("n,nir,nro->io", c, a, b)
            node["kernel"] = (node["kernel"] + delta.reshape(node["kernel"].shape)).astype(
                np.float32
            )
    return merged


@pytest.mark.parametrize(
    "scan,fold", [(False, "kernel"), (True, "factors")], ids=["loop-kernel", "scan-factors"]
)
def test_decoder_with_gathered_and_shared_parts_equals_materialised_weights(scan, fold):
    cfg = GQA
    params = random_params(cfg)
    ids, mask = right_padded([9, 6], 9, cfg.vocab_size)
    hooks = _hooks(cfg, fold)
    model = CausalLM(cfg, RuntimeConfig(scan_layers=scan))
    layout = (lambda p: stack_layers(p, cfg.num_layers)) if scan else (lambda p: p)
    hooked = jax.jit(lambda p, lr: model.apply({"params": p}, ids, mask, lowrank=lr))(
        layout(params), hooks
    )
    plain = jax.jit(lambda p, i, m: model.apply({"params": p}, i, m))
    for row in range(BATCH):
        ref = plain(
            layout(_materialise(params, cfg, hooks, row)), ids[row : row + 1], mask[row : row + 1]
        )
        n = int(mask[row].sum())
        np.testing.assert_allclose(
            np.asarray(hooked[row, :n]), np.asarray(ref[0, :n]), rtol=0, atol=1e-5
        )
    assert np.abs(np.asarray(hooked) - np.asarray(plain(layout(params), ids, mask))).max() > 1e-2


def test_folded_and_factor_gradients_agree_in_the_decoder():
    cfg = GQA
    params = random_params(cfg)
    ids, mask = right_padded([7, 5], 7, cfg.vocab_size)
    model = CausalLM(cfg)

    def loss(hooks):
        logits = model.apply({"params": params}, ids, mask, lowrank=hooks)
        return jnp.sum(jax.nn.log_softmax(logits)[..., 1] * mask)

    grad = jax.jit(jax.grad(loss))
    g_kernel = grad(_hooks(cfg, "kernel"))
    g_factors = grad(_hooks(cfg, "factors"))
    for u, v in zip(
        jax.tree_util.tree_leaves(g_kernel), jax.tree_util.tree_leaves(g_factors), strict=True
    ):
        assert np.abs(np.asarray(v)).max() > 0
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-4, atol=1e-6)


def test_bad_gathered_hooks_are_named():
    cfg = GQA
    params = random_params(cfg)
    ids, mask = right_padded([4, 4], 4, cfg.vocab_size)
    model = CausalLM(cfg)
    good = _hooks(cfg, "auto")["o_proj"]
    wrong_batch = good[0].replace(a=good[0].a[:, :1], b=good[0].b[:, :1])
    with pytest.raises(ValueError, match=r"lowrank\['o_proj'\] part 0: gathered a .* expected a"):
        model.apply({"params": params}, ids, mask, lowrank={"o_proj": (wrong_batch, good[1])})
    with pytest.raises(ValueError, match=r"gathered coeff has shape \(2, 1\)"):
        model.apply(
            {"params": params},
            ids,
            mask,
            lowrank={"o_proj": good[0].replace(coeff=jnp.ones((2, 1)))},
        )
    with pytest.raises(ValueError, match="fold 'always' is unknown"):
        model.apply(
            {"params": params}, ids, mask, lowrank={"o_proj": good[1].replace(fold="always")}
        )
