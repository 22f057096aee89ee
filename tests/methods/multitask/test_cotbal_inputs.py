"""CoTBal input files: both formats, reordering by task name, clear errors."""

import json

import numpy as np
import pytest

from jaxlvlm.methods.multitask.cotbal_inputs import (
    CotbalInputError,
    cotbal_weights_from_file,
    load_cotbal_inputs,
    write_cotbal_inputs,
)

# docs/methods.md section 1(c2), the published example.
C_OUT = [0.1637, 0.1903, 0.1952, 0.1433, 0.0768, 0.1316, 0.1582]
C_IN = [0.1634, 0.2179, 0.1326, 0.1775, 0.1674, 0.0783, 0.1219]
RATIO = [0.7597, 0.5313, 0.8852, 0.7979, 0.5511, 0.8680, 0.1904]
PUBLISHED = [0.8585, 1.0557, 0.8107, 0.8151, 1.0020, 0.8177, 1.6403]
V3 = np.array([[0.8, 0.5, 0.3], [0.6, 0.9, 0.35], [0.55, 0.45, 0.5]])
V0_3 = np.array([0.5, 0.4, 0.3])


def _write(tmp_path, doc, name="in.json"):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return str(p)


def test_reduced_form_with_ratio_reproduces_published_weights(tmp_path):
    p = _write(tmp_path, {"c_out": C_OUT, "c_in": C_IN, "ratio": RATIO})
    res = cotbal_weights_from_file(p, tau=0.5)
    np.testing.assert_array_equal(np.round(res["lam"], 4), np.asarray(PUBLISHED, np.float32))


def test_raw_scores_roundtrip_and_reorder_by_name(tmp_path):
    p = str(tmp_path / "probe.json")
    write_cotbal_inputs(p, ["a", "b", "c"], V3, V0_3)
    inp = load_cotbal_inputs(p, ["c", "a", "b"])
    order = [2, 0, 1]
    np.testing.assert_allclose(inp["V"], V3[np.ix_(order, order)])
    np.testing.assert_allclose(inp["v0"], V0_3[order])
    lam_file = cotbal_weights_from_file(p, ["c", "a", "b"])["lam"]
    lam_ref = cotbal_weights_from_file(p, ["a", "b", "c"])["lam"]
    np.testing.assert_allclose(lam_file, lam_ref[order], rtol=1e-6)


@pytest.mark.parametrize(
    "doc,match",
    [
        ({"V": [[1, 0], [0, 1]], "v0": [0, 0], "c_out": [1, 1]}, "not both"),
        ({"foo": 1}, "not neither"),
        ({"V": [[1, 0], [0, 1]]}, "'v0' is missing"),
        ({"V": [[1, 0, 0], [0, 1, 0]], "v0": [0, 0]}, r"shape \(2, 3\)"),
        ({"c_out": [1, 2], "c_in": [1, 2]}, "exactly one of 'D' and 'ratio'"),
        ({"c_out": [1, 2], "c_in": [1], "D": [1, 2]}, "'c_in' has 1 entries"),
        ({"c_out": [1, "x"], "c_in": [1, 2], "D": [1, 2]}, "'c_out' must hold numbers"),
        ({"c_out": [1, 2], "c_in": [1, 2], "D": [1, None]}, "'D' holds non-finite"),
        ({"V": [[1.0]], "v0": [0.5]}, "at least 2 tasks"),
        ({"c_out": [1, 2], "c_in": [1, 2], "D": [1, 2], "balanced": [1, 0]}, "true/false"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, doc, match):
    p = _write(tmp_path, doc)
    with pytest.raises(CotbalInputError, match=match) as e:
        load_cotbal_inputs(p)
    assert p in str(e.value)


def test_task_name_mismatch_and_missing_file(tmp_path):
    p = _write(tmp_path, {"tasks": ["a", "b"], "c_out": [1, 2], "c_in": [1, 2], "D": [1, 2]})
    with pytest.raises(
        CotbalInputError, match=r"missing from the file \['z'\], not in the run \['b'\]"
    ):
        load_cotbal_inputs(p, ["a", "z"])
    q = _write(tmp_path, {"c_out": [1, 2], "c_in": [1, 2], "D": [1, 2]}, "q.json")
    with pytest.raises(CotbalInputError, match="add 'tasks'"):
        load_cotbal_inputs(q, ["a", "b", "c"])
    with pytest.raises(CotbalInputError, match="does not exist"):
        load_cotbal_inputs(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CotbalInputError, match="not valid JSON"):
        load_cotbal_inputs(str(tmp_path / "bad.json"))


def test_fixed_task_without_probe_round_trips_and_keeps_weight_one(tmp_path):
    """A fixed-weight task has no probe: its row of V is null in the file, its weight stays 1 and
    the others' weights equal those of the 2 x 2 problem alone."""
    p = str(tmp_path / "p.json")
    V = np.array([[60.0, 40.0, 20.0], [50.0, 70.0, 25.0], [np.nan] * 3])
    v0 = np.array([40.0, 45.0, 10.0])
    write_cotbal_inputs(p, ["a", "b", "text"], V, v0, [True, True, False])
    got = cotbal_weights_from_file(p, ["a", "b", "text"])
    alone = str(tmp_path / "alone.json")
    write_cotbal_inputs(alone, ["a", "b"], V[:2, :2], v0[:2])
    np.testing.assert_allclose(got["lam"][:2], cotbal_weights_from_file(alone, ["a", "b"])["lam"])
    assert got["lam"][2] == 1.0
    with pytest.raises(ValueError, match="non-finite"):
        write_cotbal_inputs(p, ["a", "b", "text"], V, v0)  # the NaN row of a balanced task
