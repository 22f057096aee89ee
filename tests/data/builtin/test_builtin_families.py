"""Each family's answers checked against what the image shows (read back from pixels) or against an
independent source (scikit-learn's digit labels, Python arithmetic), not just the generator's word."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from builtin_pixels import blobs
from PIL import Image

from jaxlvlm.data.builtin import make_records
from jaxlvlm.data.builtin.digits import load_digit_images
from jaxlvlm.data.builtin.domains import DOMAINS
from jaxlvlm.data.builtin.reading import CHARSET
from jaxlvlm.data.builtin.scenes import NUMBER_WORDS, SHAPE_NAMES, decode_png
from jaxlvlm.eval.scorers import parse_box

# Plain and palette domains are noise-free, so blobs() reads them exactly; two sizes.
SETTINGS = [("plain", 32), ("palette", 48)]


def _records(family: str, domain: str, size: int, num: int = 120) -> list[dict]:
    return make_records(family, "train", num, seed=13, domain=domain, image_size=size)


def _question(record: dict) -> str:
    return record["conversations"][0]["value"].replace("<image>\n", "")


def _scene(record: dict, domain: str):
    return blobs(decode_png(record["images"][0]), domain)


def _find(scene, colour: str, shape: str | None = None):
    found = [b for b in scene if b.colour == colour and (shape is None or b.shape == shape)]
    assert len(found) == 1, (colour, shape, scene)
    return found[0]


@pytest.mark.parametrize("domain, size", SETTINGS)
def test_attribute_answers_match_pixels(domain, size):
    for r in _records("attribute", domain, size):
        scene, q = _scene(r, domain), _question(r)
        shape_q = re.search(r"(circle|square|triangle|cross)", q)
        if shape_q:  # colour of the object with that shape
            (target,) = [b for b in scene if b.shape == shape_q.group(1)]
            assert r["answer"] == target.colour, q
        else:  # shape of the object with the named colour
            colour = re.search(r"(red|green|blue|yellow|purple|orange)", q).group(1)
            assert r["answer"] == _find(scene, colour).shape, q
        assert r["scorer"] == "exact_match"


@pytest.mark.parametrize("domain, size", SETTINGS)
def test_counting_answers_match_pixels(domain, size):
    answers = Counter()
    for r in _records("counting", domain, size, num=150):
        scene, q = _scene(r, domain), _question(r)
        colour = re.search(r"(red|green|blue|yellow|purple|orange)", q)
        shape = re.search(r"(circle|square|triangle|cross)", q)
        if colour:
            expected = sum(b.colour == colour.group(1) for b in scene)
        elif shape:
            expected = sum(b.shape == shape.group(1) for b in scene)
        else:
            expected = len(scene)
        assert r["answer"] == str(expected), q
        answers[expected] += 1
    assert set(answers) >= {0, 1, 2, 3, 4}  # the answers are spread, not one constant


@pytest.mark.parametrize("domain, size", SETTINGS)
def test_spatial_answers_match_pixels(domain, size):
    words = Counter()
    for r in _records("spatial", domain, size):
        scene, q = _scene(r, domain), _question(r)
        (ca, sa), (cb, sb) = re.findall(
            r"(red|green|blue|yellow|purple|orange) (circle|square|triangle|cross)", q
        )
        a, b = _find(scene, ca, sa), _find(scene, cb, sb)
        dx, dy = a.centre[0] - b.centre[0], a.centre[1] - b.centre[1]
        if abs(dx) > abs(dy):
            relation = "left" if dx < 0 else "right"
        else:
            relation = "above" if dy < 0 else "below"
        asked = re.search(r"\?$", q) and re.search(
            r"Is the \w+ \w+ (to the (left|right) of|above|below) the", q
        )
        if asked and " or " not in q:
            word = asked.group(2) or asked.group(1)
            assert r["answer"] == ("yes" if word == relation else "no"), q
        else:
            assert r["answer"] == relation, q
        words[r["answer"]] += 1
    assert set(words) == {"left", "right", "above", "below", "yes", "no"}


@pytest.mark.parametrize("domain, size", SETTINGS)
def test_grounding_boxes_match_pixels(domain, size):
    for r in _records("grounding", domain, size):
        scene, q = _scene(r, domain), _question(r)
        colour, shape = re.search(
            r"(red|green|blue|yellow|purple|orange) (circle|square|triangle|cross)", q
        ).groups()
        target = _find(scene, colour, shape)
        box = parse_box(r["answer"])
        assert re.fullmatch(r"\[\d\.\d\d, \d\.\d\d, \d\.\d\d, \d\.\d\d\]", r["answer"])
        assert [round(v * size) for v in box] == list(target.box), (q, r["answer"])
        assert r["scorer"] == "iou"


@pytest.mark.parametrize("domain, size", SETTINGS)
def test_mcq_answers_match_pixels(domain, size):
    kinds = Counter()
    for r in _records("mcq", domain, size):
        scene, q = _scene(r, domain), _question(r)
        lines = q.split("\n")
        options = dict(re.fullmatch(r"([A-D])\. (.+)", line).groups() for line in lines[1:5])
        assert sorted(options) == ["A", "B", "C", "D"] and len(set(options.values())) == 4
        chosen = options[r["answer"]]
        question = lines[0]
        if "colour" in question:
            counts = Counter(b.colour for b in scene).most_common()
            assert chosen == counts[0][0] and (len(counts) == 1 or counts[1][1] < counts[0][1])
        elif "shape" in question:
            assert chosen not in {b.shape for b in scene}
            assert all(opt in {b.shape for b in scene} for opt in options.values() if opt != chosen)
        elif "total" in question or "How many" in question:
            assert chosen == str(len(scene))
        else:
            pick = max if "right" in question else min
            target = pick(scene, key=lambda b: b.centre[0])
            assert chosen == f"{target.colour} {target.shape}", q
        kinds[question.split()[0]] += 1
        assert r["scorer"] == "option_letter"
    assert len(kinds) >= 3


def _parse_caption(caption: str) -> Counter:
    items = Counter()
    for part in re.split(r", | and ", caption):
        count, colour, shape = part.split(" ")
        n = 1 if count in ("a", "an") else NUMBER_WORDS.index(count)
        singular = {shape, shape.removesuffix("s"), shape.removesuffix("es")} & set(SHAPE_NAMES)
        items[(colour, singular.pop())] += n
    return items


@pytest.mark.parametrize("domain, size", SETTINGS)
def test_captions_match_pixels(domain, size):
    for r in _records("caption", domain, size):
        scene = _scene(r, domain)
        assert _parse_caption(r["answer"]) == Counter((b.colour, b.shape) for b in scene)
        first = re.match(r"(a|an|\w+) (\w+) (\w+)", r["answer"])
        # Reading order: the caption starts with the top-left-most object.
        top = min(scene, key=lambda b: (b.box[1] // (size // 3), b.box[0]))
        assert first.group(2) == top.colour
        assert r["scorer"] == "caption"


@pytest.mark.parametrize("domain, size", SETTINGS)
def test_reading_text_is_drawn_in_the_named_box(domain, size):
    lengths = Counter()
    for r in make_records(
        "reading", "train", 60, seed=13, domain=domain, image_size=size, with_meta=True
    ):
        text = r["answer"]
        assert 1 <= len(text) <= 3 and set(text) <= set(CHARSET) and text == r["meta"]["text"]
        image = decode_png(r["images"][0]).astype(np.int32)
        ink = np.abs(image - np.asarray(DOMAINS[domain].background)).sum(-1) > 60
        ys, xs = np.nonzero(ink)
        x0, y0, x1, y1 = r["meta"]["box"]
        assert xs.min() >= x0 - 1 and xs.max() < x1 + 1 and ys.min() >= y0 - 1 and ys.max() < y1 + 1
        assert x1 <= size and y1 <= size  # the whole text fits in the image
        lengths[len(text)] += 1
    assert set(lengths) == {1, 2, 3}


def _digit_darkness(image: np.ndarray, box, domain: str) -> np.ndarray:
    """Ink intensity in [0, 1] of a digit's box, area-resampled to 8x8."""
    x0, y0, x1, y1 = box
    crop = image[y0:y1, x0:x1].astype(np.float32)
    bg = np.asarray(DOMAINS[domain].background, np.float32)
    ink = np.asarray(DOMAINS[domain].ink, np.float32)
    alpha = ((crop - bg) @ (ink - bg)) / ((ink - bg) @ (ink - bg))
    return np.asarray(Image.fromarray(alpha.astype(np.float32)).resize((8, 8), Image.BOX))


@pytest.mark.parametrize("domain, size", SETTINGS)
def test_digits_use_real_load_digits_images(domain, size):
    from sklearn.datasets import load_digits

    sk = load_digits()
    images, _ = load_digit_images()
    for r in make_records(
        "digits", "test", 40, seed=13, domain=domain, image_size=size, with_meta=True
    ):
        (index,) = r["meta"]["indices"]
        assert r["answer"] == str(sk.target[index])
        seen = _digit_darkness(decode_png(r["images"][0]), r["meta"]["boxes"][0], domain)
        corr = np.corrcoef(seen.ravel(), sk.images[index].ravel())[0, 1]
        assert corr > 0.9, (r["id"], corr)
        np.testing.assert_allclose(images[index], sk.images[index] / 16.0, atol=1e-6)


def test_digit_pair_answers_and_layouts():
    from sklearn.datasets import load_digits

    target = load_digits().target
    multi = Counter()
    for r in make_records("digit_pair", "val", 80, seed=13, with_meta=True):
        a, b = (int(target[i]) for i in r["meta"]["indices"])
        q = _question(r)
        if "sum" in q or "Add" in q:
            expected = a + b
        elif "larger" in q:
            expected = max(a, b)
        else:
            assert "smaller" in q
            expected = min(a, b)
        assert r["answer"] == str(expected)
        n_images = 2 if r["meta"]["multi_image"] else 1
        assert len(r["images"]) == n_images == r["conversations"][0]["value"].count("<image>")
        images = [decode_png(x) for x in r["images"]]
        pairs = [(0, 0), (1, 1)] if n_images == 2 else [(0, 0), (0, 1)]
        for (img, k), index in zip(pairs, r["meta"]["indices"], strict=True):
            seen = _digit_darkness(images[img], r["meta"]["boxes"][k], "plain")
            assert np.corrcoef(seen.ravel(), load_digits().images[index].ravel())[0, 1] > 0.9
        multi[n_images] += 1
    assert set(multi) == {1, 2}


def test_arithmetic_answers():
    for r in make_records("arithmetic", "train", 100, seed=13):
        a, op, b = re.search(
            r"(\d+) (plus|minus|\+|-) (\d+)", r["conversations"][0]["value"]
        ).groups()
        value = int(a) + int(b) if op in ("plus", "+") else int(a) - int(b)
        assert r["answer"] == str(value) and value >= 0
        assert r["images"] == [] and r["scorer"] == "number"


def test_short_answers_with_the_builtin_tokenizer():
    from transformers import AutoTokenizer

    from jaxlvlm.data.builtin import builtin_tokenizer_path, list_families

    tokenizer = AutoTokenizer.from_pretrained(builtin_tokenizer_path())
    for family in list_families():
        lengths = [
            len(tokenizer(r["answer"], add_special_tokens=False).input_ids)
            for r in make_records(family, "train", 60, seed=13)
        ]
        if family == "caption":
            assert max(lengths) <= 16
        elif family == "grounding":
            assert max(lengths) == min(lengths) == 24  # '[0.12, 0.34, 0.56, 0.78]', digit by digit
        else:
            assert max(lengths) <= 3, family
