"""Visual domains of the built-in suite: the same scene drawn on different backgrounds and palettes.

A domain changes only how a scene looks (background, colour values, pixel noise), never what it
contains, so a domain-incremental stream asks the same questions about shifted images (unless a
source sets wording='domain', which gives each domain its own phrasings of the digits' question:
jaxlvlm.data.builtin.wording). Colour *names* are shared by all domains; their RGB values differ in
the 'palette' domain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOUR_NAMES: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")

# Saturated colours on a light background; yellow is darkened so it stays visible on white.
_BRIGHT_PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 40),
    "blue": (30, 60, 220),
    "yellow": (215, 185, 0),
    "purple": (140, 40, 170),
    "orange": (245, 120, 10),
}

# Light tints of the same hues on a dark background: a different palette with the same names.
_PASTEL_PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (255, 120, 130),
    "green": (130, 235, 140),
    "blue": (120, 165, 255),
    "yellow": (255, 245, 140),
    "purple": (215, 145, 255),
    "orange": (255, 185, 105),
}


@dataclass(frozen=True)
class Domain:
    """How scenes are rendered in one visual domain.

    Attributes:
      name: domain name as used in configs and task names.
      palette: colour name -> RGB uint8 triple for objects, text and digit ink.
      background: RGB of a plain background (the mean tone for textured ones).
      ink: RGB of neutral ink (handwritten digits) in this domain.
      noise_std: std of additive Gaussian pixel noise in [0, 255] units (0 = none).
      textured: whether the background is a random low-contrast pattern.
    """

    name: str
    palette: dict[str, tuple[int, int, int]]
    background: tuple[int, int, int]
    ink: tuple[int, int, int]
    noise_std: float = 0.0
    textured: bool = False


DOMAINS: dict[str, Domain] = {
    "plain": Domain("plain", _BRIGHT_PALETTE, background=(255, 255, 255), ink=(20, 20, 20)),
    "noisy": Domain(
        "noisy", _BRIGHT_PALETTE, background=(255, 255, 255), ink=(20, 20, 20), noise_std=28.0
    ),
    "textured": Domain(
        "textured", _BRIGHT_PALETTE, background=(215, 210, 200), ink=(20, 20, 20), textured=True
    ),
    "palette": Domain("palette", _PASTEL_PALETTE, background=(35, 35, 45), ink=(235, 235, 235)),
}


def list_domains() -> list[str]:
    """Names of the visual domains, in a fixed order."""
    return list(DOMAINS)


def get_domain(name: str) -> Domain:
    """Looks a domain up by name; an unknown name raises a ValueError listing the known ones."""
    if name not in DOMAINS:
        raise ValueError(f"Unknown built-in domain {name!r}; choose one of {list_domains()}.")
    return DOMAINS[name]


def background(domain: Domain, size: int, rng: np.random.Generator) -> np.ndarray:
    """Background image of a domain.

    Args:
      domain: the domain.
      size: image side in pixels.
      rng: random stream for the texture (unused for flat backgrounds).
    Returns:
      uint8 array [size, size, 3].
    """
    base = np.asarray(domain.background, np.float32)
    if not domain.textured:
        return np.broadcast_to(base.astype(np.uint8), (size, size, 3)).copy()
    pattern = _texture(size, rng)  # [size, size] in [-1, 1]
    # Low contrast (+-22 grey levels) around the base tone keeps saturated objects the salient thing.
    tint = rng.uniform(-12.0, 12.0, size=3).astype(np.float32)
    image = base[None, None, :] + tint + 22.0 * pattern[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random stripe, checker or blob pattern with values in [-1, 1], shape [size, size]."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:  # oriented stripes
        angle = rng.uniform(0.0, np.pi)
        period = rng.uniform(3.0, 7.0) * size / 32.0
        phase = rng.uniform(0.0, 2 * np.pi)
        return np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + phase)
    if kind == 1:  # checkerboard
        cell = max(2, int(rng.integers(3, 7) * size / 32))
        return np.where(((x // cell) + (y // cell)) % 2 == 0, 1.0, -1.0).astype(np.float32)
    # Smooth blobs: a coarse random grid upsampled bilinearly.
    coarse = rng.uniform(-1.0, 1.0, size=(5, 5)).astype(np.float32)
    grid = np.linspace(0.0, 4.0, size, dtype=np.float32)
    i0 = np.minimum(grid.astype(np.int32), 3)
    frac = grid - i0
    rows = coarse[i0] * (1 - frac)[:, None] + coarse[i0 + 1] * frac[:, None]  # [size, 5]
    return rows[:, i0] * (1 - frac)[None, :] + rows[:, i0 + 1] * frac[None, :]


def add_noise(domain: Domain, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Adds the domain's pixel noise to a uint8 image [H, W, 3] (a no-op for noise-free domains)."""
    if domain.noise_std <= 0:
        return image
    noisy = image.astype(np.float32) + rng.normal(0.0, domain.noise_std, size=image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)
