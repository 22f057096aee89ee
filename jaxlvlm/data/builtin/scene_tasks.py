"""Perception families on shape scenes: attribute, counting, spatial relations, grounding."""

from __future__ import annotations

import numpy as np

from jaxlvlm.data.builtin.domains import COLOUR_NAMES
from jaxlvlm.data.builtin.sample import IMAGE, Context, Plan, Sample, pick
from jaxlvlm.data.builtin.scenes import (
    SHAPE_NAMES,
    SceneObject,
    distinct_objects,
    normalised_box,
    plural,
    render_scene,
    sample_objects,
)

_COLOUR_QUESTIONS = (
    "What colour is the {shape}?",
    "What is the colour of the {shape}?",
    "Which colour does the {shape} have?",
)
_SHAPE_QUESTIONS = (
    "What shape is the {colour} object?",
    "What is the shape of the {colour} object?",
    "Which shape is {colour}?",
)


def _scene_meta(objects: list[SceneObject], size: int) -> list[dict]:
    return [
        {"colour": o.colour, "shape": o.shape, "row": o.row, "col": o.col, "box": o.box(size)}
        for o in objects
    ]


def _render(objects, ctx: Context, question: str, answer: str, scorer: str, **meta) -> Sample:
    image = render_scene(objects, ctx.image_size, ctx.domain, ctx.style_rng)
    meta = {"objects": _scene_meta(objects, ctx.image_size), **meta}
    return Sample([image], f"{IMAGE}\n{question}", answer, scorer, meta)


def attribute(rng: np.random.Generator, ctx: Context) -> Plan:
    """Colour of a uniquely-shaped object, or shape of a uniquely-coloured one (1-3 objects)."""
    objects = distinct_objects(rng, int(rng.integers(1, 4)))
    target = objects[int(rng.integers(len(objects)))]
    if rng.uniform() < 0.5:
        question = pick(rng, _COLOUR_QUESTIONS).format(shape=target.shape)
        answer = target.colour
    else:
        question = pick(rng, _SHAPE_QUESTIONS).format(colour=target.colour)
        answer = target.shape
    key = (tuple(o.key(ctx.image_size) for o in objects), question)
    return Plan(key, lambda: _render(objects, ctx, question, answer, "exact_match"))


def counting(rng: np.random.Generator, ctx: Context) -> Plan:
    """How many objects (all, of a shape, or of a colour) in a scene of 1-6 objects; answer 0-6."""
    num = int(rng.integers(1, 7))
    # Few distinct values per scene so per-attribute counts above one are common.
    colours = [str(c) for c in rng.choice(COLOUR_NAMES, size=3, replace=False)]
    shapes = [str(s) for s in rng.choice(SHAPE_NAMES, size=3, replace=False)]
    objects = sample_objects(
        rng,
        num,
        colours=[str(c) for c in rng.choice(colours, size=num)],
        shapes=[str(s) for s in rng.choice(shapes, size=num)],
    )
    kind = int(rng.integers(3))
    if kind == 0:
        question = pick(
            rng,
            (
                "How many objects are there?",
                "Count the objects in the image.",
                "How many shapes can you see?",
            ),
        )
        count = num
    else:
        # Mostly ask about a value that is present; sometimes one that is absent (answer 0).
        attr = "shape" if kind == 1 else "colour"
        present = sorted({getattr(o, attr) for o in objects})
        universe = SHAPE_NAMES if attr == "shape" else COLOUR_NAMES
        pool = present if rng.uniform() < 0.85 else [v for v in universe if v not in present]
        value = str(rng.choice(pool))
        count = sum(getattr(o, attr) == value for o in objects)
        if attr == "shape":
            question = pick(
                rng, ("How many {p} are there?", "Count the {p}.", "How many {p} do you see?")
            ).format(p=plural(value))
        else:
            question = pick(
                rng,
                (
                    "How many {c} objects are there?",
                    "Count the {c} objects.",
                    "How many objects are {c}?",
                ),
            ).format(c=value)
    key = (tuple(o.key(ctx.image_size) for o in objects), question)
    return Plan(key, lambda: _render(objects, ctx, question, str(count), "number", count=count))


def spatial(rng: np.random.Generator, ctx: Context) -> Plan:
    """Relation of object A to object B: left/right/above/below, or a yes/no question.

    The two objects share a row (horizontal relation) or a column (vertical relation) so exactly one
    of the four words holds; an optional third object is a distractor.
    """
    horizontal = rng.uniform() < 0.5
    line = int(rng.integers(3))
    a_pos, b_pos = (int(v) for v in rng.choice(3, size=2, replace=False))
    if horizontal:
        cells = [(line, a_pos), (line, b_pos)]
        relation = "left" if a_pos < b_pos else "right"
    else:
        cells = [(a_pos, line), (b_pos, line)]
        relation = "above" if a_pos < b_pos else "below"
    num = 2 + int(rng.uniform() < 0.4)
    if num == 3:
        free = [(r, c) for r in range(3) for c in range(3) if (r, c) not in cells]
        cells.append(free[int(rng.integers(len(free)))])
    objects = distinct_objects(rng, num)
    objects = [
        SceneObject(o.colour, o.shape, r, c, o.scale, o.dx, o.dy)
        for o, (r, c) in zip(objects, cells, strict=True)
    ]
    a, b = objects[0], objects[1]
    kind = int(rng.integers(3))
    if kind == 0:
        question = pick(
            rng,
            (
                "Where is the {a} relative to the {b}? Answer left, right, above or below.",
                "Is the {a} left of, right of, above or below the {b}?",
            ),
        )
        answer = relation
    elif kind == 1:
        if horizontal:
            question = "Is the {a} to the left or to the right of the {b}?"
        else:
            question = "Is the {a} above or below the {b}?"
        answer = relation
    else:
        asked = str(rng.choice(("left", "right") if horizontal else ("above", "below")))
        phrase = {"left": "to the left of", "right": "to the right of"}.get(asked, asked)
        question = "Is the {a} " + phrase + " the {b}?"
        answer = "yes" if asked == relation else "no"
    question = question.format(a=a.name, b=b.name)
    key = (tuple(o.key(ctx.image_size) for o in objects), question)
    return Plan(
        key, lambda: _render(objects, ctx, question, answer, "exact_match", relation=relation)
    )


def grounding(rng: np.random.Generator, ctx: Context) -> Plan:
    """Box of a named object among 1-3, as '[x0, y0, x1, y1]' normalised to [0, 1], 2 decimals."""
    objects = distinct_objects(rng, int(rng.integers(1, 4)))
    target = objects[int(rng.integers(len(objects)))]
    question = pick(
        rng,
        (
            "Give the bounding box of the {t}.",
            "Where is the {t}? Answer with a box [x0, y0, x1, y1].",
            "Locate the {t} as [x0, y0, x1, y1].",
        ),
    ).format(t=target.name)
    box = target.box(ctx.image_size)
    answer = normalised_box(box, ctx.image_size)
    key = (tuple(o.key(ctx.image_size) for o in objects), question)
    return Plan(key, lambda: _render(objects, ctx, question, answer, "iou", target_box=box))
