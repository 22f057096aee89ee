"""Reads shape scenes back from their pixels, independently of the generator's own bookkeeping.

Used by the family tests to check answers against what is actually drawn: connected components of
non-background pixels (4-connectivity; objects in different grid cells never touch), their colour by
nearest palette entry, their box, and their shape from the fill pattern of the box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from jaxlvlm.data.builtin.domains import DOMAINS


@dataclass
class Blob:
    colour: str
    shape: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 exclusive
    centre: tuple[float, float]  # x, y


def classify_shape(mask: np.ndarray) -> str:
    """Shape of a filled object from its tight-box mask [h, w]."""
    top_full = mask[0].mean() > 0.8
    bottom_full = mask[-1].mean() > 0.8
    if top_full and bottom_full:
        return "square"
    if bottom_full:
        return "triangle"
    # A circle fills ~0.7-0.8 of its box, a plus with bars of a third of the side ~0.5.
    return "circle" if mask.mean() > 0.65 else "cross"


def blobs(image: np.ndarray, domain: str = "plain") -> list[Blob]:
    """Objects found in a noise-free rendered scene (plain or palette domain)."""
    dom = DOMAINS[domain]
    ink = np.abs(image.astype(np.int32) - np.asarray(dom.background)).sum(-1) > 30
    labels, num = ndimage.label(ink)
    names = list(dom.palette)
    rgb = np.asarray([dom.palette[n] for n in names], np.float32)
    out = []
    for k in range(1, num + 1):
        ys, xs = np.nonzero(labels == k)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        mean = image[ys, xs].astype(np.float32).mean(0)
        colour = names[int(np.argmin(((rgb - mean) ** 2).sum(-1)))]
        mask = labels[y0:y1, x0:x1] == k
        out.append(
            Blob(
                colour,
                classify_shape(mask),
                (int(x0), int(y0), int(x1), int(y1)),
                (float(xs.mean()), float(ys.mean())),
            )
        )
    return out
