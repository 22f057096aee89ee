"""A train step sharded over (2, 2, 2) and (8, 1, 1) meshes equals the single-device step."""

import functools

import jax
import numpy as np
import pytest

from jaxlvlm import sharding as shd
from jaxlvlm.models.config import lvlm_config_from_dict
from jaxlvlm.train import setup as S
from tests.train.fixtures import tiny_batch, tiny_config


@functools.cache
def _one_step(shape, grad_accum=1, lora=False):
    c = tiny_config(grad_accum=grad_accum)
    # Adam's first step moves a weight by lr * g / (|g| + eps): for the many weights whose gradient
    # is ~eps (1e-8) that is a sign function, and float noise from a different reduction order
    # (~1e-11 in g here) moves them by up to 1e-5. An eps well above that noise keeps the update a
    # smooth function of the gradient, so equal params really mean equal gradients.
    c.optim.eps = 1e-4
    c.lora.enabled = lora
    c.lora.targets = ("q_proj", "v_proj")
    c.lora.rank = 2
    cfg = lvlm_config_from_dict(c.model.to_dict())
    model = S.build(cfg, S.runtime_from(c))
    n = int(np.prod(shape))
    mesh = shd.make_mesh(shape, devices=jax.devices()[:n])
    rules = shd.DEFAULT_RULES
    setup = S.plan_train_state(
        model, cfg, c, mesh, rules, method_state={"task_weights": [1.0, 2.0, 0.5]}
    )
    state = setup.create()
    step = S.jit_train_step(model, setup, c, mesh, rules, num_tasks=3)
    state, metrics = step(state, tiny_batch(cfg))
    return jax.device_get(state), jax.device_get(metrics), shd.sharded_fraction(state.params)


def _first_moment(opt_state) -> dict[str, np.ndarray]:
    """Adam's ``mu`` leaves by key path."""
    return {
        jax.tree_util.keystr(p): np.asarray(x)
        for p, x in jax.tree_util.tree_leaves_with_path(opt_state)
        if ".mu" in jax.tree_util.keystr(p)
    }


@pytest.mark.parametrize("shape", [(2, 2, 2), (8, 1, 1)])
def test_sharded_step_equals_single_device(shape):
    ref_state, ref_m, _ = _one_step((1, 1, 1))
    state, m, split = _one_step(shape)
    np.testing.assert_allclose(m["loss"], ref_m["loss"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(m["task_loss"], ref_m["task_loss"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(m["grad_norm"], ref_m["grad_norm"], rtol=1e-5)
    leaves = jax.tree_util.tree_leaves_with_path(state.params)
    ref = dict(jax.tree_util.tree_leaves_with_path(ref_state.params))
    for path, x in leaves:
        np.testing.assert_allclose(
            x, ref[path], atol=1e-5, rtol=0, err_msg=jax.tree_util.keystr(path)
        )
    # The gradients themselves (Adam's first moment after one step is (1 - b1) * g), to 1e-5 of the
    # largest one: float32 sums of a few hundred terms in another order differ by ~1e-6 of their
    # terms, while a missing reduction over a mesh axis is off by the gradient's own size.
    mu = _first_moment(state.opt_state)
    ref_mu = _first_moment(ref_state.opt_state)
    scale = max(float(np.abs(g).max()) for g in ref_mu.values())
    assert mu.keys() == ref_mu.keys() and scale > 0
    for path, g in mu.items():
        np.testing.assert_allclose(g, ref_mu[path], atol=1e-5 * scale, rtol=0, err_msg=path)
    if shape == (2, 2, 2):
        # Parameters really are split (born sharded, kept sharded by the step).
        assert split > 0.5


def test_grad_accumulation_and_lora_sharded():
    ref_state, ref_m, _ = _one_step((1, 1, 1), grad_accum=1, lora=True)
    state, m, _ = _one_step((2, 2, 2), grad_accum=2, lora=True)
    np.testing.assert_allclose(m["loss"], ref_m["loss"], atol=1e-5, rtol=0)
    for a, b in zip(
        jax.tree_util.tree_leaves(state.lora),
        jax.tree_util.tree_leaves(ref_state.lora),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    # LoRA's b starts at zero and moves; base weights move too (nothing frozen here).
    assert np.abs(state.lora["q_proj"]["b"]).max() > 0


def _scan_step(compute_dtype):
    c = tiny_config()
    c.runtime.compute_dtype = compute_dtype
    c.runtime.scan_layers = True
    c.runtime.remat_text = "full"
    c.runtime.remat_vision = "dots"
    cfg = lvlm_config_from_dict(c.model.to_dict())
    model = S.build(cfg, S.runtime_from(c))
    mesh = shd.make_mesh((1, 1, 1), devices=jax.devices()[:1])
    setup = S.plan_train_state(model, cfg, c, mesh, shd.DEFAULT_RULES)
    step = S.jit_train_step(model, setup, c, mesh, shd.DEFAULT_RULES, num_tasks=3)
    return step(setup.create(), tiny_batch(cfg))


def test_mixed_precision_scan_remat_step():
    """bf16 compute with fp32 master weights, layers scanned and rematerialised: params stay
    float32 and the loss matches the fp32 step of the same parameters to bf16 precision."""
    new, m = _scan_step("bfloat16")
    _, ref = _scan_step("float32")
    assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(new.params))
    # bf16 has an 8-bit mantissa (relative step 2^-8 ~ 0.4%); the loss is an average of many terms.
    np.testing.assert_allclose(float(m["loss"]), float(ref["loss"]), rtol=1e-2)
