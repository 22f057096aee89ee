"""The real jitted train step with config.train.loss_chunk on follows the plain step: same losses,
per-task losses, gradient norms and parameters over 3 steps (chunked run sharded over a (2, 2, 2)
mesh with grad_accum=2 and task weights); bad settings are refused with the key to change."""

import functools

import jax
import numpy as np
import pytest

from jaxlvlm import sharding as shd
from jaxlvlm.models.config import lvlm_config_from_dict
from jaxlvlm.train import setup as S
from jaxlvlm.train.config_check import ConfigError, validate_config
from tests.train.fixtures import tiny_batch, tiny_config

STEPS = 3


@functools.cache
def _run(shape, **train):
    c = tiny_config(**train)
    cfg = lvlm_config_from_dict(c.model.to_dict())
    model = S.build(cfg, S.runtime_from(c))
    mesh = shd.make_mesh(shape, devices=jax.devices()[: int(np.prod(shape))])
    setup = S.plan_train_state(
        model, cfg, c, mesh, shd.DEFAULT_RULES, method_state={"task_weights": [1.0, 2.0, 0.5]}
    )
    state = setup.create()
    step = S.jit_train_step(model, setup, c, mesh, shd.DEFAULT_RULES, num_tasks=3)
    history, first_params = [], None
    for i in range(STEPS):
        state, m = step(state, tiny_batch(cfg, seed=i))
        history.append(jax.device_get(m))
        if i == 0:
            first_params = jax.device_get(state.params)
    return first_params, history


def _same_trajectory(got, ref):
    for m, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(m["loss"], r["loss"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(m["task_loss"], r["task_loss"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(m["task_tokens"], r["task_tokens"])
        np.testing.assert_allclose(m["grad_norm"], r["grad_norm"], rtol=1e-5)


def test_chunked_step_follows_plain_step():
    ref_params, ref = _run((1, 1, 1))
    # Sequence length 16 in chunks of 5: the last chunk is padded.
    params, got = _run((1, 1, 1), loss_chunk=5)
    _same_trajectory(got, ref)
    # The loss must move, or equal trajectories would say little about the gradients.
    assert abs(float(got[-1]["loss"]) - float(got[0]["loss"])) > 1e-3
    # Parameters after the first update: Adam's first step is lr * sign(g) wherever |g| >> eps,
    # so equal parameters mean gradients of equal sign everywhere (the gradients themselves are
    # compared at 1e-5 in test_chunked_loss.py). Later steps are not compared element-wise: Adam
    # divides by sqrt(v), which turns float-order noise in near-zero gradients into ~1e-5 moves.
    ref_flat = dict(jax.tree_util.tree_leaves_with_path(ref_params))
    for path, x in jax.tree_util.tree_leaves_with_path(params):
        np.testing.assert_allclose(
            x, ref_flat[path], atol=1e-5, rtol=0, err_msg=jax.tree_util.keystr(path)
        )


@pytest.mark.slow
def test_chunked_step_sharded_with_accumulation():
    _, ref = _run((1, 1, 1))
    _, got = _run((2, 2, 2), loss_chunk=5, grad_accum=2)
    _same_trajectory(got, ref)


def test_loss_chunk_validation():
    c = tiny_config(loss_chunk=-1)
    with pytest.raises(ConfigError, match="loss_chunk=-1"):
        validate_config(c)
    c = tiny_config(loss_chunk=8)
    c.train.loss = "no_such_loss"
    with pytest.raises(ConfigError, match="loss_chunk=8 needs a loss with a token-weight form"):
        validate_config(c)


def test_custom_forward_with_loss_chunk_is_refused():
    c = tiny_config(loss_chunk=8)
    cfg = lvlm_config_from_dict(c.model.to_dict())
    model = S.build(cfg, S.runtime_from(c))
    mesh = shd.make_mesh((1, 1, 1), devices=jax.devices()[:1])
    setup = S.plan_train_state(model, cfg, c, mesh, shd.DEFAULT_RULES)
    with pytest.raises(ValueError, match="loss_chunk=0"):
        S.jit_train_step(
            model, setup, c, mesh, shd.DEFAULT_RULES, 3, forward_fn=S.make_forward(model, 1.0)
        )
