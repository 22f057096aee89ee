"""The ClientApp <-> warm site process wire (no pickle) and how a node config names its process."""

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, RecordDict  # noqa: E402

from jaxlvlm.federated.flower import protocol as P  # noqa: E402
from jaxlvlm.federated.flower import wire  # noqa: E402
from jaxlvlm.federated.flower.link import site_identity, socket_path  # noqa: E402
from jaxlvlm.federated.flower.worker import serve_one  # noqa: E402


def _content():
    meta = P.meta_record(index=2, stage="stage2", loss=0.25, ok=True, roster=[["a#0", "a", 0, 8]])
    tree = {
        "lora": {"q": {"a": np.arange(6, dtype=np.float32).reshape(3, 2)}},
        "own_task": np.int32(1),
    }
    return P.content(meta, tree), tree


def test_a_message_content_round_trips_with_its_envelope():
    content, tree = _content()
    envelope, back = wire.unpack(wire.pack(content, {"kind": "train", "node_config": {"x": 1}}))
    assert envelope == {"kind": "train", "node_config": {"x": 1}}
    assert dict(back["meta"]) == dict(content["meta"])
    assert isinstance(back["meta"]["index"], int) and isinstance(back["meta"]["loss"], float)
    got = P.tree_of(back)
    np.testing.assert_array_equal(got["lora"]["q"]["a"], tree["lora"]["q"]["a"])
    assert got["own_task"].shape == () and got["own_task"].dtype == np.int32


def test_an_empty_content_and_bytes_that_are_no_frame():
    envelope, back = wire.unpack(wire.pack(RecordDict(), {"ok": True}))
    assert envelope == {"ok": True} and list(back.items()) == []
    with pytest.raises(ValueError, match="too short"):
        wire.unpack(b"abc")
    with pytest.raises(ValueError, match="not JSON"):
        wire.unpack((3).to_bytes(8, "little") + b"\xff\xfe\xfd")


def test_a_value_json_cannot_carry_is_named():
    records = RecordDict({"meta": ConfigRecord({"blob": b"\x00\x01"})})
    with pytest.raises(TypeError, match="cannot travel as JSON"):
        wire.pack(records, {})


def test_a_node_config_names_one_site_process(tmp_path):
    nc = {"config": "c.py:test", "workdir": str(tmp_path / "site"), "nan_round": 1}
    ident = site_identity(nc)
    assert ident["jax_cache"] == str(tmp_path / "site" / "jax_cache") and ident["client"] == ""
    assert "nan_round" not in ident  # a per-message setting, not what the site is
    assert socket_path(10, ident) == socket_path(10, ident)
    assert socket_path(10, ident) != socket_path(11, ident)  # a restarted SuperNode: a new one
    other = site_identity({**nc, "overrides": "seed=1"})
    assert socket_path(10, ident) != socket_path(10, other)
    with pytest.raises(ValueError, match=r"lacks \['workdir'\]"):
        site_identity({"config": "c.py"})


def test_the_site_process_answers_a_message_for_another_site_with_an_error(tmp_path):
    content, _ = _content()
    mine = site_identity({"config": "c.py", "workdir": str(tmp_path / "a")})
    frame = wire.pack(content, {"kind": "train", "node_config": {"config": "c.py", "workdir": "b"}})
    envelope, back = wire.unpack(serve_one(frame, mine))
    assert "serves" in envelope["error"] and list(back.items()) == []
