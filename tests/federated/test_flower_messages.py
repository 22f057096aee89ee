"""Flower messages: parameter trees through ArrayRecords (no pickle), fingerprints, the roster."""

import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flwr")

from jaxlvlm.federated.flower import protocol as P  # noqa: E402
from jaxlvlm.federated.flower.arrays import from_record, like, to_record  # noqa: E402


def _tree():
    return {
        "task_adapter": {"fc1": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}},
        "lora": {"q": {"a": jnp.ones((3, 2), jnp.bfloat16)}},
        "own_task": np.int32(1),
        "client_state": {},
    }


def test_tree_round_trips_through_an_array_record_with_dtypes_and_scalars():
    tree = _tree()
    arrays, layout = to_record(tree)
    assert sorted(arrays) == ["lora/q/a", "own_task", "task_adapter/fc1/kernel"]
    back = like(tree, from_record(arrays, layout))
    assert back["client_state"] == {}  # empty containers come back from the template
    assert back["own_task"].shape == () and back["own_task"].dtype == np.int32
    assert back["lora"]["q"]["a"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        back["task_adapter"]["fc1"]["kernel"], tree["task_adapter"]["fc1"]["kernel"]
    )


def test_message_content_carries_meta_and_parameters():
    meta = P.meta_record(
        index=2, stage="stage2", fingerprint={"seed": 0}, roster=[["a#0", "a", 0, 8]]
    )
    content = P.content(meta, _tree())
    assert P.read_json_field(content["meta"], "fingerprint") == {"seed": 0}
    assert P.roster_from(content["meta"]) == [P.Member("a#0", "a", 0, 8)]
    np.testing.assert_array_equal(
        P.tree_of(content)["own_task"], np.ones((1,), np.int32).reshape(())
    )


def test_a_tree_of_another_layout_stays_as_received_so_the_check_names_it():
    got = {"task_adapter": {"fc1": {"bias": np.zeros(3, np.float32)}}}
    assert like(_tree(), got) is got


def test_fingerprint_ignores_site_data_and_refuses_other_training_keys():
    c = P.load_config("configs/federated_builtin.py:test,approach=fedavg")
    s = P.settings(c)
    fp = P.fingerprint(c, s)
    assert not any(k.startswith("data.sources") for k in fp)
    site = P.load_config("configs/federated_builtin.py:test,approach=fedavg", "method.lr_lora=0.5")
    theirs = P.fingerprint(site, P.settings(site))
    why = P.refusal("site 'x'", theirs, fp)
    assert why is not None and "method.lr_lora was 0.5" in why
    assert P.refusal("site 'x'", fp, fp) is None


def test_overrides_apply_and_an_unknown_method_key_is_named():
    c = P.load_config(
        "configs/federated_builtin.py:test", 'method.clients_per_task=1 data.tasks=["a"]'
    )
    assert c.method.clients_per_task == 1 and tuple(c.data.tasks) == ("a",)
    with pytest.raises(ValueError, match="colour"):
        P.settings(P.load_config("configs/federated_builtin.py:test", "method.colour=3"))
