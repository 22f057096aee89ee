import numpy as np

from jaxlvlm.eval.evaluate import decode_tokens, evaluate, score_predictions


class _Tok:
    """Decodes ids as letters; id 0 is a special (pad) token, 1 is eos."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(ord("a") + i - 2) for i in ids if not (skip_special_tokens and i < 2))


def test_decode_cuts_at_eos_and_drops_specials():
    toks = np.array([[2, 3, 1, 4], [0, 2, 2, 0]])
    assert decode_tokens(toks, _Tok(), eos_id=1) == ["ab", "aa"]


def test_score_predictions_per_task():
    rows = [
        {"task": "t1", "scorer": "exact_match", "prediction": "Red", "reference": "red"},
        {"task": "t1", "scorer": "exact_match", "prediction": "blue", "reference": "red"},
        {"task": "t2", "scorer": "number", "prediction": "3", "reference": "3"},
    ]
    scores, counts = score_predictions(rows)
    assert scores == {"t1": 0.5, "t2": 1.0}
    assert counts == {"t1": 2, "t2": 1}
    assert [r["score"] for r in rows] == [1.0, 0.0, 1.0]


def test_evaluate_skips_padding_rows():
    batch = {"input_ids": np.zeros((3, 4), np.int32)}
    info = {
        "ids": ["a", "b", ""],
        "references": ["ab", "b", ""],
        "scorers": ["exact_match", "exact_match", ""],
        "tasks": ["x", "y", ""],
        "valid": [True, True, False],
    }
    gen = lambda b: np.array([[2, 3, 1], [2, 1, 1], [5, 5, 5]])  # noqa: E731
    res = evaluate(gen, [(batch, info)], _Tok(), eos_id=1)
    assert res.scores == {"x": 1.0, "y": 0.0}
    assert [p["prediction"] for p in res.predictions] == ["ab", "a"]
    assert res.mean == 0.5
