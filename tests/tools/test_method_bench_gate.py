"""The learnability gate's answer counts match what the generators actually ask and answer."""

from collections import defaultdict

import pytest

from jaxlvlm.data.builtin.registry import make_records
from tools.method_bench.gate import admissible_answers, chance_level, thresholds


def _answers_by_count(family, num=600):
    """{admissible count: distinct answers seen for questions the gate gives that count}."""
    seen = defaultdict(set)
    for r in make_records(family, "train", num, 0, image_size=32, with_meta=True):
        seen[admissible_answers(family, r)].add(r["answer"])
    return dict(seen)


@pytest.mark.parametrize("family", ["attribute", "counting", "spatial", "digit_pair", "digits"])
def test_each_question_kind_admits_exactly_the_answers_it_is_counted_with(family):
    seen = _answers_by_count(family)
    assert seen, family
    for count, answers in seen.items():
        if family == "spatial" and count == 2:
            # left/right, above/below and yes/no questions each admit two of six words.
            assert answers <= {"left", "right", "above", "below", "yes", "no"}
            continue
        assert len(answers) == count, (family, count, sorted(answers))


def test_chance_follows_the_test_split_mix_and_free_form_has_none():
    spatial = chance_level(dict(family="spatial", split="test", num=300, seed=0), image_size=32)
    assert 25.0 < spatial < 50.0  # between all four-way and all two-way questions
    assert chance_level(dict(family="grounding", split="test", num=5, seed=0), 32) is None
    gate = thresholds([dict(family="counting", split="test", num=20, seed=0, task="c"),
                       dict(family="reading", split="test", num=20, seed=0, task="r")], 32)  # fmt: skip
    assert gate["c"]["threshold"] == pytest.approx(200 / 7)
    assert gate["r"] == {"chance": None, "threshold": 20.0}


def test_a_family_without_an_answer_count_is_refused():
    with pytest.raises(ValueError, match="no answer count for family 'newfam'"):
        admissible_answers("newfam", {"answer": "x"})
