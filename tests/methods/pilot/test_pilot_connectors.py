"""Pilot connectors and losses: difference loss forms, router aux losses by hand, CT-MoA composition,
frozen adapters bitwise unchanged in stage 2."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from jaxlvlm.methods.pilot.losses import (
    difference_loss,
    difference_loss_direct,
    find_sown,
    load_balancing_loss,
    router_z_loss,
)
from jaxlvlm.models.connector import make_connector
from jaxlvlm.models.pilot_connectors import (
    DIFFERENCE_LOSS,
    ROUTER_LOGITS,
    AdapterMLP,
    connector_trainable_mask,
)

DV, C, N, M, T = 12, 16, 5, 3, 3


def test_difference_loss_nxn_equals_direct_and_numpy():
    rng = np.random.default_rng(0)
    xt = rng.normal(size=(M, N, C)).astype(np.float32)
    xs = rng.normal(size=(M, N, C)).astype(np.float32)
    a = np.asarray(difference_loss(jnp.asarray(xt), jnp.asarray(xs)))
    b = np.asarray(difference_loss_direct(jnp.asarray(xt), jnp.asarray(xs)))
    ref = np.array(
        [np.linalg.norm(xt[i].T.astype(np.float64) @ xs[i], "fro") ** 2 for i in range(M)]
    )
    np.testing.assert_allclose(a, ref, rtol=1e-5)
    np.testing.assert_allclose(b, ref, rtol=1e-5)
    # x_tᵀ x_s sums over tokens: disjoint token supports give 0, disjoint channels do not.
    xt0 = np.zeros((1, N, C), np.float32)
    xs0 = np.zeros((1, N, C), np.float32)
    xt0[:, :2], xs0[:, 2:] = 1.0, 1.0
    assert float(difference_loss(jnp.asarray(xt0), jnp.asarray(xs0))[0]) == 0.0


def test_router_aux_losses_hand_case():
    # 4 tokens, 2 experts, routed 2/2 with confident logits: balanced, L_b ~ 1.
    z = jnp.asarray([[20.0, 0.0], [20.0, 0.0], [0.0, 20.0], [0.0, 20.0]])
    np.testing.assert_allclose(float(load_balancing_loss(z)), 1.0, rtol=1e-6)
    # All to expert 0, P = (1, 0): L_b = 2 * 1 * 1 = 2.
    z_all = jnp.asarray([[30.0, 0.0]] * 4)
    np.testing.assert_allclose(float(load_balancing_loss(z_all)), 2.0, rtol=1e-6)
    # Zero logits: argmax ties go to expert 0, f = (1, 0), P̄ = (.5, .5) -> 2 * .5 = 1;
    # z-loss = (log 2)^2.
    z0 = jnp.zeros((4, 2))
    np.testing.assert_allclose(float(load_balancing_loss(z0)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(router_z_loss(z0)), np.log(2.0) ** 2, rtol=1e-6)
    # Masked tokens (second image) do not count.
    zm = jnp.stack([z_all, jnp.asarray([[0.0, 30.0]] * 4)])  # [M=2, N=4, 2]
    np.testing.assert_allclose(
        float(load_balancing_loss(zm, jnp.asarray([1.0, 0.0]))), 2.0, rtol=1e-6
    )
    zz = jnp.asarray([[1.0, 2.0], [3.0, -1.0]])
    ref = np.mean([np.log(np.exp(1) + np.exp(2)) ** 2, np.log(np.exp(3) + np.exp(-1)) ** 2])
    np.testing.assert_allclose(float(router_z_loss(zz)), ref, rtol=1e-6)


def _features():
    return jnp.asarray(np.random.default_rng(1).normal(size=(M, N, DV)), jnp.float32)


def test_stage1_connector_sums_adapters_and_sows_difference_loss():
    mod = make_connector("pilot_stage1", DV, C)
    h = _features()
    params = jax.jit(mod.init)(jax.random.key(0), h)["params"]
    params = jax.tree_util.tree_map(lambda x: x, nn.meta.unbox(params))
    # Zero-init last layer of the client adapter: at init the output is the task adapter alone.
    out, state = mod.apply({"params": params}, h, mutable=["intermediates"])
    x_t = AdapterMLP(C, C).apply({"params": params["task_adapter"]}, h)
    np.testing.assert_allclose(np.asarray(out), np.asarray(x_t), rtol=1e-6, atol=1e-7)
    params["client_adapter"]["linear_2"]["kernel"] = (
        jnp.ones_like(params["client_adapter"]["linear_2"]["kernel"]) * 0.1
    )
    out, state = mod.apply({"params": params}, h, mutable=["intermediates"])
    x_s = AdapterMLP(C, C).apply({"params": params["client_adapter"]}, h)
    np.testing.assert_allclose(np.asarray(out), np.asarray(x_t + x_s), rtol=1e-5, atol=1e-6)
    (ld,) = find_sown(state["intermediates"], DIFFERENCE_LOSS)
    np.testing.assert_allclose(
        np.asarray(ld), np.asarray(difference_loss_direct(x_t, x_s)), rtol=1e-5
    )


def _ctmoa():
    mod = make_connector("pilot_ctmoa", DV, C, num_tasks=T, cross_hidden_dim=8)
    h = _features()
    params = nn.meta.unbox(jax.jit(mod.init)(jax.random.key(0), h)["params"])
    # Non-zero cross / client adapters so every path matters.
    params = jax.tree_util.tree_map(lambda x: x, params)
    for name in ("cross_adapters", "client_adapter"):
        k = params[name]["linear_2"]["kernel"]
        params[name]["linear_2"]["kernel"] = 0.05 * jax.random.normal(jax.random.key(7), k.shape)
    return mod, h, params


def test_ctmoa_matches_manual_mixture():
    mod, h, params = _ctmoa()
    assert params["other_task_adapters"]["linear_1"]["kernel"].shape == (T - 1, DV, C)
    assert params["cross_adapters"]["linear_1"]["kernel"].shape == (T - 1, DV, 8)
    out, state = jax.jit(lambda p: mod.apply({"params": p}, h, mutable=["intermediates"]))(params)
    ad = jax.jit(lambda p, hid: AdapterMLP(hid, C).apply({"params": p}, h), static_argnums=1)
    take = lambda tree, i: jax.tree_util.tree_map(lambda x: x[i], tree)
    experts = [ad(params["own_task_adapter"], C)] + [
        ad(take(params["other_task_adapters"], i), C) + ad(take(params["cross_adapters"], i), 8)
        for i in range(T - 1)
    ]
    z = h @ params["router"]["kernel"] + params["router"]["bias"]
    p = jax.nn.softmax(z, -1)
    ref = sum(p[..., i : i + 1] * experts[i] for i in range(T)) + ad(params["client_adapter"], C)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-6)
    (zs,) = find_sown(state["intermediates"], ROUTER_LOGITS)
    np.testing.assert_allclose(np.asarray(zs), np.asarray(z), rtol=1e-5, atol=1e-6)


def test_stage2_frozen_adapters_bitwise_unchanged_under_adamw():
    mod, h, params = _ctmoa()
    mask = connector_trainable_mask(params, "stage2")
    opt = optax.multi_transform(
        {True: optax.adamw(1e-2, weight_decay=0.1), False: optax.set_to_zero()}, mask
    )
    target = jnp.ones((M, N, C))

    def loss(p):
        out, st = mod.apply({"params": p}, h, mutable=["intermediates"])
        z = find_sown(st["intermediates"], ROUTER_LOGITS)[0]
        return (
            jnp.mean((out - target) ** 2) + 0.01 * load_balancing_loss(z) + 1e-3 * router_z_loss(z)
        )

    @jax.jit
    def train_step(p, state):
        updates, state = opt.update(jax.grad(loss)(p), state, p)
        return optax.apply_updates(p, updates), state

    state = opt.init(params)
    p = params
    for _ in range(3):
        p, state = train_step(p, state)
    for name in ("other_task_adapters", "client_adapter"):
        for a, b in zip(
            jax.tree_util.tree_leaves(p[name]), jax.tree_util.tree_leaves(params[name]), strict=True
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for name in ("own_task_adapter", "cross_adapters", "router"):
        diff = jax.tree_util.tree_map(
            lambda a, b: float(jnp.abs(a - b).max()), p[name], params[name]
        )
        assert max(jax.tree_util.tree_leaves(diff)) > 0, name
    # Gradients never reach the frozen parts (stop_gradient in the module).
    g = jax.jit(jax.grad(loss))(params)
    assert all(
        float(jnp.abs(x).max()) == 0 for x in jax.tree_util.tree_leaves(g["other_task_adapters"])
    )
