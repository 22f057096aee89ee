"""Scenes of coloured shapes: random layout on a 3x3 grid, and rendering with PIL.

Objects sit in distinct cells of a 3x3 grid, so they never overlap and counting, spatial relations
and boxes are unambiguous. Size and position jitter inside the cell keep images varied. A scene is
planned first (cheap, hashable) and rendered only if the registry keeps it for the requested split.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from jaxlvlm.data.builtin.domains import COLOUR_NAMES, Domain, add_noise, background

SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
GRID = 3


@dataclass(frozen=True)
class SceneObject:
    """One object, with its box in unit coordinates relative to its grid cell.

    Attributes:
      colour: a name from COLOUR_NAMES.
      shape: a name from SHAPE_NAMES.
      row, col: grid cell (0..2, top-left origin).
      scale: object side as a fraction of the cell side.
      dx, dy: offset of the object inside the free room of its cell, in [0, 1].
    """

    colour: str
    shape: str
    row: int
    col: int
    scale: float
    dx: float
    dy: float

    @property
    def name(self) -> str:
        """'red circle'."""
        return f"{self.colour} {self.shape}"

    def box(self, size: int) -> tuple[int, int, int, int]:
        """Pixel box (x0, y0, x1, y1) with exclusive x1/y1 in an image of side `size`."""
        cell = size / GRID
        # The last pixel row/column of each cell stays free so neighbours never touch.
        usable = int(cell) - 1
        side = min(usable, max(3, int(round(self.scale * cell))))
        room = usable - side
        x0 = int(self.col * cell) + int(round(self.dx * room))
        y0 = int(self.row * cell) + int(round(self.dy * room))
        return x0, y0, x0 + side, y0 + side

    def key(self, size: int) -> tuple:
        """Hashable summary of what is drawn (colour, shape, pixel box), used to assign the scene to
        a split: two scenes with equal keys render to identical images."""
        return (self.colour, self.shape, *self.box(size))


def sample_objects(
    rng: np.random.Generator,
    num: int,
    colours: list[str] | tuple[str, ...] | None = None,
    shapes: list[str] | tuple[str, ...] | None = None,
    cells: list[tuple[int, int]] | None = None,
) -> list[SceneObject]:
    """Places `num` objects in distinct random cells.

    Args:
      rng: random stream.
      num: number of objects (at most 9).
      colours: one colour per object (len num), or None to draw each uniformly.
      shapes: one shape per object (len num), or None to draw each uniformly.
      cells: one (row, col) per object, or None to draw distinct cells.
    Returns:
      the objects, in the order of `colours`/`shapes`.
    """
    if cells is None:
        flat = rng.choice(GRID * GRID, size=num, replace=False)
        cells = [(int(i) // GRID, int(i) % GRID) for i in flat]
    out = []
    for k in range(num):
        colour = colours[k] if colours is not None else str(rng.choice(COLOUR_NAMES))
        shape = shapes[k] if shapes is not None else str(rng.choice(SHAPE_NAMES))
        out.append(
            SceneObject(
                colour=colour,
                shape=shape,
                row=cells[k][0],
                col=cells[k][1],
                scale=float(rng.uniform(0.62, 0.9)),
                dx=float(rng.uniform()),
                dy=float(rng.uniform()),
            )
        )
    return out


def distinct_objects(rng: np.random.Generator, num: int) -> list[SceneObject]:
    """`num` objects with pairwise distinct colours and pairwise distinct shapes.

    Then 'the red object' and 'the circle' each name exactly one object.
    """
    colours = [str(c) for c in rng.choice(COLOUR_NAMES, size=num, replace=False)]
    shapes = [str(s) for s in rng.choice(SHAPE_NAMES, size=num, replace=False)]
    return sample_objects(rng, num, colours, shapes)


def reading_order(objects: list[SceneObject]) -> list[SceneObject]:
    """Objects sorted top-to-bottom, then left-to-right by grid cell."""
    return sorted(objects, key=lambda o: (o.row, o.col))


def draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, size: int, domain: Domain) -> None:
    """Draws one object filled with its domain colour."""
    x0, y0, x1, y1 = obj.box(size)
    fill = domain.palette[obj.colour]
    # PIL boxes are inclusive of the last pixel; our boxes are exclusive.
    last_x, last_y = x1 - 1, y1 - 1
    if obj.shape == "circle":
        draw.ellipse((x0, y0, last_x, last_y), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x0, y0, last_x, last_y), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon(((x0 + last_x) / 2, y0, last_x, last_y, x0, last_y), fill=fill)
    elif obj.shape == "cross":
        side = x1 - x0
        bar = max(1, int(round(side / 3)))
        lo = (side - bar) // 2
        draw.rectangle((x0 + lo, y0, x0 + lo + bar - 1, last_y), fill=fill)
        draw.rectangle((x0, y0 + lo, last_x, y0 + lo + bar - 1), fill=fill)
    else:
        raise ValueError(f"Unknown shape {obj.shape!r}; known shapes are {SHAPE_NAMES}.")


def render_scene(
    objects: list[SceneObject], size: int, domain: Domain, rng: np.random.Generator
) -> np.ndarray:
    """Renders objects on the domain background.

    Args:
      objects: the scene.
      size: image side in pixels.
      domain: visual domain (background, palette, noise).
      rng: random stream for texture and noise.
    Returns:
      uint8 image [size, size, 3].
    """
    image = Image.fromarray(background(domain, size, rng))
    draw = ImageDraw.Draw(image)
    for obj in objects:
        draw_object(draw, obj, size, domain)
    return add_noise(domain, np.asarray(image), rng)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 image [H, W, 3] (fast compression: images are tiny)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """Decodes image bytes to uint8 RGB [H, W, 3]."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def normalised_box(box: tuple[int, int, int, int], size: int) -> str:
    """'[x0, y0, x1, y1]' with coordinates divided by the image side, 2 decimals."""
    return "[" + ", ".join(f"{v / size:.2f}" for v in box) + "]"


def plural(shape: str) -> str:
    """'circles', 'crosses'."""
    return shape + ("es" if shape.endswith("s") else "s")


NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven")
