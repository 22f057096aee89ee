"""Scorers on hand-worked cases; malformed predictions score 0 and never raise."""

from __future__ import annotations

import math

import pytest

from jaxlvlm.eval.scorers import (
    box_iou,
    cider_d,
    extract_option_letter,
    list_scorers,
    normalised_cider_d,
    normalize_vqa,
    parse_box,
    parse_number,
    score,
    score_batch,
)


@pytest.mark.parametrize(
    "prediction, reference, expected",
    [
        ("Red", "red", 1.0),
        ("red.", "red", 1.0),
        ("  red  ", "red", 1.0),
        ("K7X", "k7x", 1.0),
        ("reddish", "red", 0.0),
        ("red circle", "red", 0.0),
        ("", "red", 0.0),
        ("blue", ["red", "blue"], 1.0),
    ],
)
def test_exact_match(prediction, reference, expected):
    assert score("exact_match", prediction, reference) == expected


def test_vqa_normalisation_and_accuracy():
    assert normalize_vqa("Two dogs.") == "2 dogs"
    assert normalize_vqa("The Red one!") == "red 1"
    assert normalize_vqa("1,000") == "1000"
    assert normalize_vqa("3.5") == "3.5"
    assert normalize_vqa("yes, it is") == "yes it is"
    assert score("vqa", "An apple", "apple") == 1.0
    assert score("vqa", "two", "2") == 1.0
    assert score("vqa", "pear", "apple") == 0.0
    # Ten human answers: 2 say 'cat' -> each leave-one-out subset gives min(1, k/3).
    humans = ["cat"] * 2 + ["dog"] * 8
    expected = (2 * (1 / 3) + 8 * (2 / 3)) / 10
    assert score("vqa", "cat", humans) == pytest.approx(expected)
    assert score("vqa", "dog", humans) == 1.0


@pytest.mark.parametrize(
    "text, letter",
    [
        ("B", "B"),
        ("B.", "B"),
        ("(C)", "C"),
        ("D) green", "D"),
        ("A. red", "A"),
        ("A", "A"),
        ("The answer is C.", "C"),
        ("answer: b", "B"),
        ("I pick option D", "D"),
        ("A red circle", None),  # the article, not option A
        ("B or C", None),  # no commitment
        ("B. blue square, not C", "B"),
        ("E", None),
        ("", None),
    ],
)
def test_option_letter_extraction(text, letter):
    assert extract_option_letter(text) == letter


def test_option_letter_scores():
    assert score("option_letter", "B", "B") == 1.0
    assert score("option_letter", "The answer is B", "B") == 1.0
    assert score("option_letter", "C", "B") == 0.0
    assert score("option_letter", "no idea", "B") == 0.0
    with pytest.raises(ValueError, match="names no option"):
        score("option_letter", "B", "purple")


def test_boxes_and_iou():
    assert parse_box("[0.12, 0.25, 0.41, 0.50]") == (0.12, 0.25, 0.41, 0.5)
    assert parse_box("box: 0.1 0.2 0.3 0.4 extra 9") == (0.1, 0.2, 0.3, 0.4)
    assert parse_box("[0.1, 0.2, 0.3]") is None
    assert box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert box_iou((0.5, 0, 0.2, 1), (0, 0, 1, 1)) == 0.0  # inverted prediction
    ref = "[0.00, 0.00, 0.50, 0.50]"
    assert score("iou", "[0.00, 0.00, 0.50, 0.50]", ref) == 1.0
    assert score("iou", "[0.00, 0.00, 0.50, 0.25]", ref) == pytest.approx(0.5)
    assert score("acc@0.5", "[0.00, 0.00, 0.50, 0.25]", ref) == 1.0
    assert score("acc@0.5", "[0.00, 0.00, 0.50, 0.24]", ref) == 0.0
    assert score("iou", "[0.0, 0.0, 0.5", ref) == 0.0
    assert score("iou", "a red circle", ref) == 0.0
    with pytest.raises(ValueError, match="is not a box"):
        score("iou", ref, "[0.5, 0.5, 0.1, 0.1]")


@pytest.mark.parametrize(
    "prediction, reference, expected",
    [
        ("7", "7", 1.0),
        ("7.0", "7", 1.0),
        ("seven", "7", 1.0),
        ("There are 7 objects.", "7", 1.0),
        ("8", "7", 0.0),
        ("0", "0", 1.0),
        ("1", "0", 0.0),
        ("104", "100", 1.0),  # within 5%
        ("106", "100", 0.0),
        ("1,024", "1024", 1.0),
        ("-3", "-3", 1.0),
        ("3", "-3", 0.0),
        ("none", "7", 0.0),
        ("K7X", "K7X", 1.0),  # a non-numeric reference is compared as text
        ("inf", "7", 0.0),
    ],
)
def test_relaxed_number(prediction, reference, expected):
    assert score("number", prediction, reference) == expected


def test_parse_number():
    assert parse_number("about 3.5 m") == 3.5
    assert parse_number("twelve") == 12.0
    assert parse_number("no digits") is None


def test_cider_d_hand_computed():
    # Corpus of two reference sets; 'a' is in both, so its IDF is 0 and only 'b'/'c' n-grams count.
    # 'b a' vs 'a b': unigram cosine 1, bigram 'b a' unseen -> 0; orders 3-4 empty -> (1+0)/4*10.
    assert cider_d(["b a", "a c"], [["a b"], ["a c"]]) == pytest.approx([2.5, 5.0])
    assert normalised_cider_d(["b a", "a c"], [["a b"], ["a c"]]) == pytest.approx([0.5, 1.0])
    # Length penalty: four extra words shrink every order by exp(-16 / 72).
    long = cider_d(["a b x y z w"], [["a b"]])[0]
    # Without a corpus weights are uniform: unigrams 2/sqrt(6*2), bigrams 1/sqrt(5*1).
    expected = 10 * math.exp(-16 / 72) * (2 / math.sqrt(12) + 1 / math.sqrt(5)) / 4
    assert long == pytest.approx(expected)


def test_caption_scores():
    assert score("caption", "a red circle", "a red circle") == 1.0
    assert score("caption", "A red circle.", "a red circle") == 1.0
    assert 0.0 < score("caption", "a blue circle", "a red circle") < 0.5
    assert score("caption", "", "a red circle") == 0.0
    refs = ["a red circle and a blue square", "two green crosses", "an orange triangle"]
    preds = ["a blue square and a red circle", "two green crosses", "a yellow cross"]
    batch = score_batch(["caption"] * 3, preds, refs)
    assert batch[1] == 1.0 and 0.0 < batch[0] < 1.0 and batch[2] == 0.0
    assert all(0.0 <= s <= 1.0 for s in batch)


def test_score_batch_mixes_scorers():
    names = ["exact_match", "number", "option_letter", "iou", "caption", "vqa"]
    preds = ["red", "3", "B", "[0, 0, 1, 1]", "a red circle", "two"]
    refs = ["red", "4", "B", "[0, 0, 1, 1]", "a red circle", "2"]
    assert score_batch(names, preds, refs) == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="equally many"):
        score_batch(names, preds[:-1], refs)


@pytest.mark.parametrize("name", list_scorers())
@pytest.mark.parametrize("prediction", [None, 7, "", "\x00\ufffd", "[[[", "A" * 10_000, "nan"])
def test_malformed_predictions_score_zero(name, prediction):
    reference = {
        "option_letter": "B",
        "iou": "[0.10, 0.10, 0.50, 0.50]",
        "acc@0.5": "[0.10, 0.10, 0.50, 0.50]",
        "number": "7",
    }.get(name, "red")
    assert score(name, prediction, reference) == 0.0
    assert score_batch([name], [prediction], [reference]) == [0.0]


def test_unknown_scorer_is_named():
    with pytest.raises(ValueError, match="Unknown scorer 'bleu'"):
        score("bleu", "a", "a")
    with pytest.raises(ValueError, match="Unknown scorer 'bleu'"):
        score_batch(["bleu"], ["a"], ["a"])
