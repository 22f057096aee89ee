import os

from jaxlvlm.eval.report import write_report


def _records():
    recs = []
    for s in (1, 2, 3, 2, 3, 4):  # steps 2-3 rewritten after a resume
        recs.append(
            {
                "step": s,
                "kind": "train",
                "loss": 5.0 / s,
                "task_loss": {"counting": 4.0 / s, "attribute": 6.0 / s},
                "task_tokens": {"counting": 3.0, "attribute": 2.0},
            }
        )
    recs.append({"step": 2, "kind": "eval", "counting": 0.2, "attribute": 0.4})
    recs.append({"step": 4, "kind": "eval", "counting": 0.5, "attribute": 0.75})
    return recs


def test_report_has_scores_and_plots(tmp_path):
    path = write_report(
        str(tmp_path),
        _records(),
        {"counting": 0.5, "attribute": 0.75},
        chance={"counting": 0.2},
        details={"wall time": "3 s"},
    )
    text = open(path).read()
    assert "| counting | 0.500 | 0.200 |" in text
    assert "| attribute | 0.750 | |" in text
    assert "Mean over 2 tasks: 0.625" in text
    assert "loss 5.0000 -> 1.2500" in text
    assert "| 2 | 0.400 | 0.200 |" in text  # eval table, tasks sorted: attribute, counting
    for png in ("loss.png", "scores.png"):
        with open(os.path.join(tmp_path, png), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_report_without_eval(tmp_path):
    text = open(write_report(str(tmp_path), [], None)).read()
    assert "No evaluation was run." in text
    assert not os.path.exists(os.path.join(tmp_path, "scores.png"))
