"""Families that combine perception with a step of reasoning or language: multiple choice, captions."""

from __future__ import annotations

from collections import Counter

import numpy as np

from jaxlvlm.data.builtin.domains import COLOUR_NAMES
from jaxlvlm.data.builtin.sample import IMAGE, Context, Plan, Sample, pick
from jaxlvlm.data.builtin.scenes import (
    NUMBER_WORDS,
    SHAPE_NAMES,
    SceneObject,
    distinct_objects,
    plural,
    reading_order,
    render_scene,
    sample_objects,
)

LETTERS = ("A", "B", "C", "D")
_ANSWER_HINTS = (
    "Answer with the option's letter.",
    "Answer with a single letter.",
    "Reply with the letter of the correct option.",
)


def _most_frequent_colour(rng: np.random.Generator) -> tuple[list[SceneObject], str, str, list]:
    num = int(rng.integers(3, 7))
    colours = [str(c) for c in rng.choice(COLOUR_NAMES, size=3, replace=False)]
    while True:  # redraw until the most frequent colour is unique
        drawn = [str(c) for c in rng.choice(colours, size=num)]
        top = Counter(drawn).most_common()
        if len(top) == 1 or top[0][1] > top[1][1]:
            break
    objects = sample_objects(rng, num, colours=drawn)
    answer = top[0][0]
    others = [c for c in COLOUR_NAMES if c != answer]
    options = [answer] + [str(c) for c in rng.choice(others, size=3, replace=False)]
    question = pick(
        rng,
        (
            "Which colour appears most often?",
            "What is the most common colour among the objects?",
        ),
    )
    return objects, question, answer, options


def _missing_shape(rng: np.random.Generator) -> tuple[list[SceneObject], str, str, list]:
    missing = str(rng.choice(SHAPE_NAMES))
    present = [s for s in SHAPE_NAMES if s != missing]
    num = int(rng.integers(3, 7))
    shapes = present + [str(s) for s in rng.choice(present, size=num - 3)]
    shapes = [shapes[i] for i in rng.permutation(num)]
    objects = sample_objects(rng, num, shapes=shapes)
    question = pick(
        rng, ("Which shape does not appear in the image?", "Which shape is missing from the image?")
    )
    return objects, question, missing, list(SHAPE_NAMES)


def _total_count(rng: np.random.Generator) -> tuple[list[SceneObject], str, str, list]:
    num = int(rng.integers(1, 7))
    objects = sample_objects(rng, num)
    wrong = [n for n in range(1, 8) if n != num]
    options = [str(num)] + [str(n) for n in rng.choice(wrong, size=3, replace=False)]
    question = pick(
        rng,
        ("How many objects are there in total?", "What is the total number of objects?"),
    )
    return objects, question, str(num), options


def _leftmost(rng: np.random.Generator) -> tuple[list[SceneObject], str, str, list]:
    num = int(rng.integers(2, 4))
    objects = distinct_objects(rng, num)
    cols = [int(c) for c in rng.choice(3, size=num, replace=False)]  # distinct columns
    rows = [int(r) for r in rng.integers(0, 3, size=num)]
    objects = [
        SceneObject(o.colour, o.shape, r, c, o.scale, o.dx, o.dy)
        for o, r, c in zip(objects, rows, cols, strict=True)
    ]
    rightmost = rng.uniform() < 0.5
    target = max(objects, key=lambda o: o.col) if rightmost else min(objects, key=lambda o: o.col)
    names = [o.name for o in objects]
    decoys = []
    while len(names) + len(decoys) < 4:
        decoy = f"{rng.choice(COLOUR_NAMES)} {rng.choice(SHAPE_NAMES)}"
        if decoy not in names and decoy not in decoys:
            decoys.append(decoy)
    options = [target.name] + [n for n in names if n != target.name] + decoys
    side = "right" if rightmost else "left"
    question = pick(
        rng, ("Which object is furthest to the {s}?", "Which object is closest to the {s} edge?")
    ).format(s=side)
    return objects, question, target.name, options


_MCQ_KINDS = (_most_frequent_colour, _missing_shape, _total_count, _leftmost)


def mcq(rng: np.random.Generator, ctx: Context) -> Plan:
    """Four-option multiple choice (most frequent colour, missing shape, total count, extreme
    object); the answer is the letter A-D of the correct option."""
    objects, question, correct, options = _MCQ_KINDS[int(rng.integers(len(_MCQ_KINDS)))](rng)
    options = [options[i] for i in rng.permutation(len(options))]
    letter = LETTERS[options.index(correct)]
    lines = [question] + [f"{ltr}. {opt}" for ltr, opt in zip(LETTERS, options, strict=True)]
    lines.append(pick(rng, _ANSWER_HINTS))
    prompt_text = "\n".join(lines)
    key = (tuple(o.key(ctx.image_size) for o in objects), prompt_text)

    def render() -> Sample:
        image = render_scene(objects, ctx.image_size, ctx.domain, ctx.style_rng)
        meta = {
            "objects": [
                {"colour": o.colour, "shape": o.shape, "row": o.row, "col": o.col} for o in objects
            ],
            "options": options,
            "correct": correct,
        }
        return Sample([image], f"{IMAGE}\n{prompt_text}", letter, "option_letter", meta)

    return Plan(key, render)


def caption_text(objects: list[SceneObject]) -> str:
    """'a red circle, two blue squares and a green cross' in reading order of first appearance."""
    groups: dict[str, int] = {}
    for obj in reading_order(objects):
        groups[obj.name] = groups.get(obj.name, 0) + 1
    parts = []
    for name, n in groups.items():
        if n == 1:
            parts.append(f"{'an' if name[0] in 'aeiou' else 'a'} {name}")
        else:
            colour, shape = name.split(" ")
            parts.append(f"{NUMBER_WORDS[n]} {colour} {plural(shape)}")
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(rng: np.random.Generator, ctx: Context) -> Plan:
    """Short caption listing 1-4 objects in reading order; scored with CIDEr-D."""
    num = int(rng.integers(1, 5))
    # Two draws per slot from a small set makes repeated objects ('two red circles') common.
    colours = [str(c) for c in rng.choice(COLOUR_NAMES, size=2, replace=False)]
    shapes = [str(s) for s in rng.choice(SHAPE_NAMES, size=2, replace=False)]
    objects = sample_objects(
        rng,
        num,
        colours=[str(c) for c in rng.choice(colours, size=num)],
        shapes=[str(s) for s in rng.choice(shapes, size=num)],
    )
    question = pick(
        rng,
        (
            "Describe the image briefly.",
            "Write a short caption for the image.",
            "What is in the image? Answer with a short caption.",
        ),
    )
    answer = caption_text(objects)
    key = (tuple(o.key(ctx.image_size) for o in objects), question)

    def render() -> Sample:
        image = render_scene(objects, ctx.image_size, ctx.domain, ctx.style_rng)
        meta = {"objects": [{"colour": o.colour, "shape": o.shape} for o in objects]}
        return Sample([image], f"{IMAGE}\n{question}", answer, "caption", meta)

    return Plan(key, render)
