"""Reading family: 1-3 characters rendered with PIL's bundled default font; answer the text."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxlvlm.data.builtin.domains import COLOUR_NAMES, add_noise, background
from jaxlvlm.data.builtin.sample import IMAGE, Context, Plan, Sample, pick

# No I/O/0/1: they are ambiguous at a 12-pixel font size.
CHARSET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_QUESTIONS = (
    "What text is written in the image?",
    "Read the text in the image.",
    "What does the image say?",
    "Which characters are shown?",
)


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow bundles a scalable default font (FreeType); 0.38 x image side stays legible at 32 px.
    return ImageFont.load_default(size=max(8, int(round(0.38 * size))))


def text_box(text: str, size: int) -> tuple[int, int, int, int]:
    """Ink box (left, top, right, bottom) of `text` drawn at the origin for an image side `size`."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return tuple(int(v) for v in probe.textbbox((0, 0), text, font=_font(size)))


def text_position(text: str, fx: float, fy: float, size: int) -> tuple[int, int, int, int]:
    """Pixel ink box (x0, y0, x1, y1), exclusive, of `text` placed at relative position (fx, fy) in
    [0, 1] of the free room of an image of side `size` (1-pixel margin)."""
    left, top, right, bottom = text_box(text, size)
    width, height = right - left, bottom - top
    x = 1 + int(round(fx * max(size - width - 2, 0)))
    y = 1 + int(round(fy * max(size - height - 2, 0)))
    return x, y, x + width, y + height


def render_text(text: str, colour: str, box: tuple[int, int, int, int], ctx: Context) -> np.ndarray:
    """Draws `text` with its ink box at `box` (from text_position); uint8 image [S, S, 3]."""
    size = ctx.image_size
    left, top, _, _ = text_box(text, size)
    image = Image.fromarray(background(ctx.domain, size, ctx.style_rng))
    ImageDraw.Draw(image).text(
        (box[0] - left, box[1] - top), text, fill=ctx.domain.palette[colour], font=_font(size)
    )
    return add_noise(ctx.domain, np.asarray(image), ctx.style_rng)


def reading(rng: np.random.Generator, ctx: Context) -> Plan:
    """Read 1-3 characters (upper-case letters and digits 2-9) in one of the palette colours."""
    length = int(rng.integers(1, 4))
    text = "".join(CHARSET[int(i)] for i in rng.integers(len(CHARSET), size=length))
    colour = str(rng.choice(COLOUR_NAMES))
    box = text_position(text, float(rng.uniform()), float(rng.uniform()), ctx.image_size)
    question = pick(rng, _QUESTIONS)
    key = (text, colour, box, question)

    def render() -> Sample:
        image = render_text(text, colour, box, ctx)
        meta = {"text": text, "colour": colour, "box": box}
        return Sample([image], f"{IMAGE}\n{question}", text, "exact_match", meta)

    return Plan(key, render)
