"""Families on real images: scikit-learn's bundled handwritten digits (load_digits, 1797 x 8x8).

The 1797 images are split once by a fixed permutation (80/10/10) into train/val/test pools, so test
questions are always about handwriting never seen in training, whatever the seed.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from jaxlvlm.data.builtin.domains import add_noise, background
from jaxlvlm.data.builtin.sample import IMAGE, Context, Plan, Sample, pick
from jaxlvlm.data.builtin.wording import phrasings

_SPLIT_FRACTIONS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}
_PARTITION_SEED = 20240601  # fixed forever: changing it would move images across splits


@functools.lru_cache(maxsize=1)
def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """The bundled digits: (images float32 [1797, 8, 8] in [0, 1], labels int64 [1797])."""
    from sklearn.datasets import (
        load_digits,  # scikit-learn: heavy, only when the digits family is generated
    )

    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)


@functools.lru_cache(maxsize=3)
def split_pool(split: str) -> np.ndarray:
    """Indices into load_digit_images() that belong to `split` (disjoint across splits)."""
    images, _ = load_digit_images()
    order = np.random.default_rng(_PARTITION_SEED).permutation(len(images))
    lo, hi = _SPLIT_FRACTIONS[split]
    return np.sort(order[int(lo * len(order)) : int(hi * len(order))])


def _stamp(canvas: np.ndarray, digit: np.ndarray, x0: int, y0: int, side: int, ink) -> None:
    """Alpha-composites an upscaled digit (ink intensity as alpha) onto canvas in place."""
    alpha = Image.fromarray(digit).resize((side, side), Image.BILINEAR)
    alpha = np.clip(np.asarray(alpha, np.float32), 0.0, 1.0)[..., None]
    region = canvas[y0 : y0 + side, x0 : x0 + side]
    region[...] = region * (1.0 - alpha) + np.asarray(ink, np.float32) * alpha


def digit_boxes(
    layout: list[tuple[float, float, float]], size: int
) -> list[tuple[int, int, int, int]]:
    """Pixel boxes (x0, y0, x1, y1), exclusive, of digits laid out in equal columns of an image."""
    column = size // len(layout)
    boxes = []
    for k, (scale, fx, fy) in enumerate(layout):
        side = max(8, int(round(scale * column)))
        x0 = k * column + int(round(fx * (column - side)))
        y0 = int(round(fy * (size - side)))
        boxes.append((x0, y0, x0 + side, y0 + side))
    return boxes


def render_digits(
    indices: list[int], layout: list[tuple[float, float, float]], ctx: Context
) -> np.ndarray:
    """Draws digits side by side in equal columns.

    Args:
      indices: digit image indices, one per column.
      layout: per digit (scale of the column width, fx, fy) with fx/fy in [0, 1] placing it in the
        free room of its column.
      ctx: rendering context.
    Returns:
      uint8 image [S, S, 3].
    """
    images, _ = load_digit_images()
    size = ctx.image_size
    canvas = background(ctx.domain, size, ctx.style_rng).astype(np.float32)
    for index, box in zip(indices, digit_boxes(layout, size), strict=True):
        x0, y0, x1, _ = box
        _stamp(canvas, images[index], x0, y0, x1 - x0, ctx.domain.ink)
    return add_noise(ctx.domain, np.clip(canvas, 0, 255).astype(np.uint8), ctx.style_rng)


def _layout(rng: np.random.Generator, n: int) -> list[tuple[float, float, float]]:
    return [
        (float(rng.uniform(0.75, 0.95)), float(rng.uniform()), float(rng.uniform()))
        for _ in range(n)
    ]


def digits(rng: np.random.Generator, ctx: Context) -> Plan:
    """Which digit is shown (one real handwritten digit per image); answer '0'-'9'. The question's
    phrasing follows ctx.wording (jaxlvlm.data.builtin.wording)."""
    pool = split_pool(ctx.split)
    index = int(pool[int(rng.integers(len(pool)))])
    layout = _layout(rng, 1)
    # Every wording's set has the same length: the same draw, so only the text depends on it.
    question = pick(rng, phrasings("digits", ctx.domain.name, ctx.wording))
    label = int(load_digit_images()[1][index])

    def render() -> Sample:
        image = render_digits([index], layout, ctx)
        meta = {"indices": [index], "labels": [label], "boxes": digit_boxes(layout, ctx.image_size)}
        return Sample([image], f"{IMAGE}\n{question}", str(label), "number", meta)

    return Plan(None, render)


def digit_pair(rng: np.random.Generator, ctx: Context) -> Plan:
    """Sum, larger or smaller of two handwritten digits: either two digits side by side in one image,
    or two images with two '<image>' placeholders (multi-image)."""
    pool = split_pool(ctx.split)
    pair = [int(pool[int(i)]) for i in rng.integers(len(pool), size=2)]
    labels = [int(load_digit_images()[1][i]) for i in pair]
    multi_image = rng.uniform() < 0.5
    layouts = _layout(rng, 2)
    op = int(rng.integers(3))
    if op == 0:
        ask = pick(rng, ("What is the sum of the two digits?", "Add the two digits."))
        answer = sum(labels)
    elif op == 1:
        ask = pick(rng, ("Which is the larger of the two digits?", "What is the larger digit?"))
        answer = max(labels)
    else:
        ask = pick(rng, ("Which is the smaller of the two digits?", "What is the smaller digit?"))
        answer = min(labels)

    def render() -> Sample:
        if multi_image:
            images = [render_digits([i], [lay], ctx) for i, lay in zip(pair, layouts, strict=True)]
            prompt = f"{IMAGE}\n{IMAGE}\nEach image shows one digit. {ask}"
        else:
            images = [render_digits(pair, layouts, ctx)]
            prompt = f"{IMAGE}\nThe image shows two digits. {ask}"
        if multi_image:
            boxes = [digit_boxes([lay], ctx.image_size)[0] for lay in layouts]
        else:
            boxes = digit_boxes(layouts, ctx.image_size)
        meta = {"indices": pair, "labels": labels, "multi_image": multi_image, "op": op}
        meta["boxes"] = boxes
        return Sample(images, prompt, str(answer), "number", meta)

    return Plan(None, render)
