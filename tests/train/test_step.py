import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxlvlm.train.losses import token_nll
from jaxlvlm.train.optimizer import frozen_mask, make_optimizer
from jaxlvlm.train.state import TrainState
from jaxlvlm.train.step import make_train_step
from tests.train.toy import T, toy_batch, toy_forward, toy_params


def _opt():
    return ml_collections.ConfigDict(
        dict(
            lr=0.05,
            warmup_steps=0,
            end_lr_ratio=1.0,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            weight_decay=0.01,
            max_grad_norm=1.0,
            freeze=("^vision/",),
            lr_groups=(),
        )
    )


def _state(method_state=None):
    tr = {"params": toy_params(), "lora": {}}
    tx, labels, sched = make_optimizer(tr, _opt(), 10)
    st = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=tr["params"],
        lora={},
        opt_state=tx.init(tr),
        rng=jax.random.PRNGKey(1),
        method_state=method_state or {},
    )
    return st, tx, labels, sched


def test_loss_is_token_weighted_nll_and_per_task():
    lam = jnp.asarray([0.5, 2.0, 1.0])
    st, tx, labels, sched = _state({"task_weights": lam})
    step = make_train_step(toy_forward, tx, frozen_mask(labels), num_tasks=T, schedule=sched)
    batch = toy_batch()
    _, m = jax.jit(step)(st, batch)
    nll = np.asarray(token_nll(toy_forward(st.params, {}, batch, {}, None), batch["targets"]))
    w = np.asarray(lam)[batch["task_ids"]][:, None] * batch["loss_mask"]
    np.testing.assert_allclose(m["loss"], (w * nll).sum() / w.sum(), rtol=1e-6)
    for t in range(T):
        sel = (batch["task_ids"] == t)[:, None] * batch["loss_mask"]
        np.testing.assert_allclose(m["task_loss"][t], (sel * nll).sum() / sel.sum(), rtol=1e-6)
        np.testing.assert_allclose(m["task_tokens"][t], sel.sum())
    assert float(m["tokens"]) == batch["loss_mask"].sum()


def test_grad_accumulation_equals_full_batch_and_frozen_stays():
    st, tx, labels, sched = _state()
    fr = frozen_mask(labels)
    full = jax.jit(make_train_step(toy_forward, tx, fr, num_tasks=T))
    accum = jax.jit(make_train_step(toy_forward, tx, fr, num_tasks=T, grad_accum=4))
    batch = toy_batch()
    s1, m1 = full(st, batch)
    s2, m2 = accum(st, batch)
    np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-6)
    np.testing.assert_allclose(m1["grad_norm"], m2["grad_norm"], rtol=1e-5)
    np.testing.assert_allclose(m1["task_loss"], m2["task_loss"], rtol=1e-6)
    for a, b in zip(
        jax.tree_util.tree_leaves(s1.params), jax.tree_util.tree_leaves(s2.params), strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_array_equal(s1.params["vision"]["proj"], st.params["vision"]["proj"])
    assert not np.allclose(s1.params["llm"]["head"], st.params["llm"]["head"])
    assert int(s1.step) == 1
