import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxlvlm.train.optimizer import FROZEN, make_optimizer, make_schedule, param_labels
from tests.train.toy import toy_params


def _cfg(**kw):
    c = ml_collections.ConfigDict(
        dict(
            lr=0.1,
            warmup_steps=2,
            end_lr_ratio=0.1,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            weight_decay=0.0,
            max_grad_norm=0.0,
            freeze=(),
            lr_groups=(),
        )
    )
    c.update(kw)
    return c


def test_schedule_warmup_then_cosine():
    s = make_schedule(1.0, warmup_steps=4, total_steps=20, end_lr_ratio=0.1)
    np.testing.assert_allclose(
        [float(s(i)) for i in range(5)], [0, 0.25, 0.5, 0.75, 1.0], atol=1e-7
    )
    mid = 4 + 8
    expect = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 8 / 16))
    np.testing.assert_allclose(float(s(mid)), expect, rtol=1e-6)
    np.testing.assert_allclose(float(s(20)), 0.1, rtol=1e-6)


def test_labels_freeze_and_groups():
    tr = {"params": toy_params(), "lora": {"q_proj": {"a": jnp.zeros((1, 1, 2, 2))}}}
    labels = param_labels(tr, ["^vision/"], [("^connector/", 0.5), ("^lora/", 0.2)])
    assert labels["params"]["vision"]["proj"] == FROZEN
    assert labels["params"]["connector"]["bias"] == "group0"
    assert labels["lora"]["q_proj"]["a"] == "group1"
    assert labels["params"]["llm"]["head"] == "default"


def test_frozen_has_no_state_and_no_update_and_group_lr():
    tr = {"params": toy_params(), "lora": {}}
    tx, labels, _ = make_optimizer(
        tr, _cfg(freeze=("^vision/",), lr_groups=(("^connector/", 0.5),), warmup_steps=0), 10
    )
    state = tx.init(tr)
    # Adam moments exist for 3 trainable leaves only (mu and nu): the frozen tower has no state.
    n_state = sum(x.size for x in jax.tree_util.tree_leaves(state) if x.ndim > 0)
    n_train = sum(
        x.size
        for k, x in [
            ("c", tr["params"]["connector"]["bias"]),
            ("e", tr["params"]["llm"]["embed"]),
            ("h", tr["params"]["llm"]["head"]),
        ]
    )
    assert n_state == 2 * n_train
    grads = jax.tree_util.tree_map(jnp.ones_like, tr)
    updates, _ = tx.update(grads, state, tr)
    assert float(jnp.abs(updates["params"]["vision"]["proj"]).max()) == 0.0
    # First Adam step moves each coordinate by ~lr (sign of the gradient): group lr 0.5 vs 0.1.
    np.testing.assert_allclose(updates["params"]["connector"]["bias"], -0.5, rtol=1e-5)
    np.testing.assert_allclose(updates["params"]["llm"]["head"], -0.1, rtol=1e-5)


def test_clipping_bounds_global_norm():
    tr = {"params": toy_params(), "lora": {}}
    tx, _, _ = make_optimizer(tr, _cfg(max_grad_norm=1e-3, lr=1.0, warmup_steps=0), 10)
    # Plain SGD view: compare with optax's clip on the same gradients.
    grads = jax.tree_util.tree_map(lambda x: 100.0 * jnp.ones_like(x), tr)
    clipped, _ = optax.clip_by_global_norm(1e-3).update(grads, optax.EmptyState())
    assert float(optax.global_norm(clipped)) == pytest.approx(1e-3, rel=1e-5)
    updates, _ = tx.update(grads, tx.init(tr), tr)
    assert np.isfinite(float(optax.global_norm(updates)))


def test_bad_regex_is_an_error():
    tr = {"params": toy_params(), "lora": {}}
    with pytest.raises(Exception, match="unterminated|missing"):
        make_optimizer(tr, _cfg(freeze=("vision/(",)), 10)
