"""Client backends (vmap == loop), bad update rejection, round schedule, stage-2 parameter assembly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlvlm.methods.pilot.aggregation import adaptive_aggregate
from jaxlvlm.methods.pilot.client import ClientProgram, run_clients
from jaxlvlm.methods.pilot.server import (
    check_update,
    collect_updates,
    other_task_index,
    round_schedule,
    stage2_connector_params,
)

K, S, BS, D = 4, 3, 5, 3


def _program():
    """Local SGD with momentum on least squares; the client keeps its momentum between rounds."""

    def init(payload, client_state, key):
        w = payload["w"] + 0.01 * jax.random.normal(key, payload["w"].shape)
        return {"w": w, "mom": client_state["mom"]}

    def step(state, batch, shared):
        loss, g = jax.value_and_grad(lambda w: jnp.mean((batch["x"] @ w - batch["y"]) ** 2))(
            state["w"]
        )
        mom = 0.9 * state["mom"] + g
        return {"w": state["w"] - shared["lr"] * mom, "mom": mom}, {"loss": loss}

    def final(state):
        return {"w": state["w"]}, {"mom": state["mom"]}

    return ClientProgram(init=init, step=step, final=final)


def test_vmapped_clients_equal_clients_in_sequence():
    rng = np.random.default_rng(0)
    payloads = {"w": jnp.asarray(rng.normal(size=(K, D)), jnp.float32)}
    states = {"mom": jnp.asarray(rng.normal(size=(K, D)), jnp.float32)}
    batches = {
        "x": jnp.asarray(rng.normal(size=(K, S, BS, D)), jnp.float32),
        "y": jnp.asarray(rng.normal(size=(K, S, BS)), jnp.float32),
    }
    active = jnp.asarray([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], bool)
    keys = jax.random.split(jax.random.key(0), K)
    shared = {"lr": jnp.float32(0.1)}  # one copy for all clients, not vmapped
    prog = _program()
    out_v = run_clients("vmap", prog, payloads, states, batches, active, keys, shared)
    out_l = run_clients("loop", prog, payloads, states, batches, active, keys, shared)
    for a, b in zip(
        jax.tree_util.tree_leaves(out_v), jax.tree_util.tree_leaves(out_l), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    # Client 2 ran one step only: its inactive steps left the state exactly as after step 1.
    one = run_clients(
        "loop", prog, payloads, states, batches, jnp.asarray([[1, 0, 0]] * K, bool), keys, shared
    )
    np.testing.assert_array_equal(np.asarray(out_v[0]["w"][2]), np.asarray(one[0]["w"][2]))
    with pytest.raises(ValueError, match="unknown client backend"):
        run_clients("threads", prog, payloads, states, batches, active, keys, shared)


def test_bad_client_updates_are_rejected_named_and_the_round_goes_on():
    prev = [
        {"lora": {"a": jnp.full((2, 3), float(i)), "b": jnp.full((3,), float(i))}} for i in range(4)
    ]
    good = [
        {"lora": {"a": jnp.full((2, 3), i + 0.5), "b": jnp.full((3,), i + 0.5)}} for i in range(4)
    ]
    updates = list(good)
    updates[1] = {"lora": {"a": jnp.full((2, 3), jnp.nan), "b": jnp.ones((3,))}}
    updates[2] = {"lora": {"a": jnp.ones((3, 2)), "b": jnp.ones((3,))}}
    names = ["hospital_a", "hospital_b", "clinic_c", "lab_d"]
    got = collect_updates(names, updates, prev)
    np.testing.assert_array_equal(got.valid, [True, False, False, True])
    reasons = dict(got.rejected)
    assert set(reasons) == {"hospital_b", "clinic_c"}
    assert "non-finite" in reasons["hospital_b"] and "['lora']['a']" in reasons["hospital_b"]
    assert "shape (3, 2)" in reasons["clinic_c"] and "expected (2, 3)" in reasons["clinic_c"]
    # Rejected slots hold the previous parameters; aggregation stays finite and leaves them as they were.
    np.testing.assert_array_equal(
        np.asarray(got.stacked["lora"]["a"][1]), np.asarray(prev[1]["lora"]["a"])
    )
    out = adaptive_aggregate(got.stacked, jnp.ones(4), jnp.asarray(got.valid), 3)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(out))
    np.testing.assert_array_equal(np.asarray(out["lora"]["a"][2]), np.asarray(prev[2]["lora"]["a"]))
    # Accepted clients mix only with accepted ones (values i + 0.5 of clients 0 and 3).
    a0 = float(out["lora"]["a"][0, 0, 0])
    assert 0.5 <= a0 <= 3.5
    assert "missing" in check_update("x", {"lora": {"a": jnp.ones((2, 3))}}, prev[0])
    assert "dtype" in check_update(
        "x", {"lora": {"a": jnp.ones((2, 3), jnp.int32), "b": jnp.ones(3)}}, prev[0]
    )
    assert check_update("x", good[0], prev[0]) is None


def test_round_schedule_and_stage2_assembly():
    assert round_schedule(3) == [(1, "stage1"), (1, "stage2"), (2, "stage2"), (3, "stage2")]
    with pytest.raises(ValueError):
        round_schedule(0)
    np.testing.assert_array_equal(np.asarray(other_task_index(2, 4)), [0, 1, 3])
    np.testing.assert_array_equal(np.asarray(other_task_index(0, 4)), [1, 2, 3])
    avgs = {"k": jnp.arange(4.0)[:, None] * jnp.ones((4, 2))}
    p = stage2_connector_params(avgs, 2, 4, {"c": 1}, {"x": 2}, {"r": 3})
    np.testing.assert_array_equal(np.asarray(p["own_task_adapter"]["k"]), [2.0, 2.0])
    np.testing.assert_array_equal(np.asarray(p["other_task_adapters"]["k"][:, 0]), [0.0, 1.0, 3.0])
    # vmappable over clients with different own tasks.
    own = jax.vmap(
        lambda t: stage2_connector_params(avgs, t, 4, {}, {}, {})["other_task_adapters"]["k"][:, 0]
    )(jnp.asarray([0, 3]))
    np.testing.assert_array_equal(np.asarray(own), [[1.0, 2.0, 3.0], [0.0, 1.0, 2.0]])
