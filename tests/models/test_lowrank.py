"""Low-rank hooks: the hooked model equals the model whose weights carry the materialised delta
W + sum_n coeff[b, n] a_n b_n (per example), with scan on and off; gradients reach a, b and coeff."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_decoder import GQA, random_params, right_padded, stack_layers

from jaxlvlm.models.config import RuntimeConfig
from jaxlvlm.models.decoder import CausalLM
from jaxlvlm.models.lowrank import (
    LOWRANK_TARGETS,
    LowRankFactors,
    lowrank_delta,
    lowrank_dims,
)

N, RANK = 2, 3
MODULE_OF = {
    t: ("mlp" if t in ("gate_proj", "up_proj", "down_proj") else "self_attn")
    for t in LOWRANK_TARGETS
}


def _factors(cfg, batch, targets=LOWRANK_TARGETS, seed=0):
    rng = np.random.RandomState(seed)
    out = {}
    for target in targets:
        d_in, d_out = lowrank_dims(cfg)[target]
        out[target] = LowRankFactors(
            a=jnp.asarray(0.3 * rng.normal(size=(cfg.num_layers, N, d_in, RANK)), jnp.float32),
            b=jnp.asarray(0.3 * rng.normal(size=(cfg.num_layers, N, RANK, d_out)), jnp.float32),
            coeff=jnp.asarray(rng.uniform(0.2, 1.5, size=(batch, N)), jnp.float32),
        )
    return out


def _materialise(params, cfg, factors, row):
    """Per-layer params with kernel += sum_n coeff[row, n] * a[l, n] @ b[l, n] for every target."""
    merged = copy.deepcopy(jax.tree_util.tree_map(np.asarray, params))
    for target, f in factors.items():
        a, b, coeff = (np.asarray(x, np.float64) for x in (f.a, f.b, f.coeff))
        for layer in range(cfg.num_layers):
            node = merged[f"layers_{layer}"][MODULE_OF[target]][target]
            delta = np.einsum("n,nir,nro->io", coeff[row], a[layer], b[layer])
            node["kernel"] = (node["kernel"] + delta.reshape(node["kernel"].shape)).astype(
                np.float32
            )
    return merged


@pytest.mark.parametrize("scan", [False, True], ids=["loop", "scan"])
def test_hooks_equal_materialised_weights(scan):
    cfg = GQA
    params = random_params(cfg)
    ids, mask = right_padded([10, 7], 10, cfg.vocab_size)
    factors = _factors(cfg, batch=2)
    model = CausalLM(cfg, RuntimeConfig(scan_layers=scan))
    layout = (lambda p: stack_layers(p, cfg.num_layers)) if scan else (lambda p: p)

    hooked = jax.jit(lambda p, lr: model.apply({"params": p}, ids, mask, lowrank=lr))(
        layout(params), factors
    )
    plain = jax.jit(lambda p, i, m: model.apply({"params": p}, i, m))
    for row in range(2):
        merged = layout(_materialise(params, cfg, factors, row))
        ref = plain(merged, ids[row : row + 1], mask[row : row + 1])
        n = int(mask[row].sum())
        np.testing.assert_allclose(
            np.asarray(hooked[row, :n]), np.asarray(ref[0, :n]), rtol=0, atol=1e-5
        )
    # The hooks change the output: this is not a comparison of two unhooked models.
    base = plain(layout(params), ids, mask)
    assert np.abs(np.asarray(hooked) - np.asarray(base)).max() > 1e-2


def test_shared_coeff_broadcasts_over_the_batch():
    cfg = GQA
    params = random_params(cfg)
    ids, mask = right_padded([6, 6], 6, cfg.vocab_size)
    per_example = _factors(cfg, batch=2, targets=("o_proj",))
    f = per_example["o_proj"]
    tiled = {"o_proj": f.replace(coeff=jnp.tile(f.coeff[:1], (2, 1)))}
    shared = {"o_proj": f.replace(coeff=f.coeff[0])}
    run = jax.jit(lambda lr: CausalLM(cfg).apply({"params": params}, ids, mask, lowrank=lr))
    np.testing.assert_allclose(np.asarray(run(shared)), np.asarray(run(tiled)), rtol=0, atol=1e-6)


def test_gradients_reach_factors_and_coefficients():
    cfg = GQA
    params = stack_layers(random_params(cfg), cfg.num_layers)
    ids, mask = right_padded([8, 5], 8, cfg.vocab_size)
    factors = _factors(cfg, batch=2, targets=("q_proj", "o_proj", "up_proj"))
    model = CausalLM(cfg, RuntimeConfig(scan_layers=True))

    def loss(lr):
        logits = model.apply({"params": params}, ids, mask, lowrank=lr)
        return jnp.sum(jax.nn.log_softmax(logits)[..., 1] * mask)

    grads = jax.jit(jax.grad(loss))(factors)
    for target, g in grads.items():
        for name in ("a", "b", "coeff"):
            value = np.asarray(getattr(g, name))
            assert np.isfinite(value).all() and np.abs(value).max() > 0, (target, name)
            # Every layer's slice is used (scan slices the layer axis, not just layer 0).
            if name != "coeff":
                assert (np.abs(value).reshape(cfg.num_layers, -1).max(-1) > 0).all(), (target, name)


def test_delta_formula():
    rng = np.random.RandomState(1)
    x = rng.normal(size=(2, 3, 5)).astype(np.float32)
    a = rng.normal(size=(4, 5, 2)).astype(np.float32)
    b = rng.normal(size=(4, 2, 6)).astype(np.float32)
    coeff = rng.normal(size=(2, 4)).astype(np.float32)
    ours = lowrank_delta(
        jnp.asarray(x), LowRankFactors(jnp.asarray(a), jnp.asarray(b), jnp.asarray(coeff))
    )
    ref = np.einsum("bsi,bio->bso", x, np.einsum("bn,nir,nro->bio", coeff, a, b))
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=0, atol=1e-5)


def test_bad_hooks_are_named():
    cfg = GQA
    params = random_params(cfg)
    ids, mask = right_padded([4], 4, cfg.vocab_size)
    model = CausalLM(cfg)
    good = _factors(cfg, batch=1, targets=("k_proj",))["k_proj"]
    with pytest.raises(ValueError, match="'qkv_proj' is unknown"):
        model.apply({"params": params}, ids, mask, lowrank={"qkv_proj": good})
    wrong = good.replace(b=good.b[..., :-1])
    with pytest.raises(ValueError, match=r"lowrank\['k_proj'\].*expected a"):
        model.apply({"params": params}, ids, mask, lowrank={"k_proj": wrong})
    with pytest.raises(ValueError, match="coeff has shape"):
        model.apply(
            {"params": params}, ids, mask, lowrank={"k_proj": good.replace(coeff=jnp.ones((3, N)))}
        )
