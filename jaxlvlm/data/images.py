"""Image decoding and preprocessing per vision tower style (Pillow + numpy, no TensorFlow).

'clip': resize the shorter side to ``image_size`` (bicubic), centre crop, CLIP mean/std
(what CLIPImageProcessor does). 'siglip': resize straight to ``image_size`` x ``image_size``
(bicubic), mean = std = 0.5 (SiglipImageProcessor). Output is float32 [H, W, 3], channels last.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxlvlm.data.bad_samples import BadSample

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

_STATS = {"clip": (CLIP_MEAN, CLIP_STD), "siglip": (SIGLIP_MEAN, SIGLIP_STD)}


def normalisation_stats(style: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean [3], std [3]) float32 for a vision style ('clip' | 'siglip')."""
    if style not in _STATS:
        raise ValueError(f"unknown vision style {style!r}; expected one of {sorted(_STATS)}")
    mean, std = _STATS[style]
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def decode_image(data: bytes, sample_id: str = "?", slot: int = 0) -> Image.Image:
    """Decodes encoded image bytes (PNG, JPEG, ...) into an RGB PIL image.

    Raises:
      BadSample('unreadable_image') naming the sample and image slot when Pillow cannot read it.
    """
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) == 0:
        raise BadSample(
            "unreadable_image",
            sample_id,
            f"image {slot} is empty or not bytes ({type(data).__name__}); store encoded PNG/JPEG bytes",
        )
    try:
        image = Image.open(io.BytesIO(bytes(data)))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BadSample(
            "unreadable_image",
            sample_id,
            f"image {slot} ({len(data)} bytes) cannot be decoded by Pillow: {e}; "
            "re-encode it as PNG or JPEG",
        ) from e
    return image.convert("RGB")


def resize_image(image: Image.Image, image_size: int, style: str) -> Image.Image:
    """Resizes to image_size x image_size the way the style's HF image processor does."""
    if style == "siglip":
        if image.size != (image_size, image_size):
            image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
        return image
    if style != "clip":
        raise ValueError(f"unknown vision style {style!r}; expected 'clip' or 'siglip'")
    width, height = image.size
    if (width, height) == (image_size, image_size):
        return image
    # Shorter side -> image_size, longer side truncated like transformers' get_resize_output_image_size.
    if width <= height:
        new_w, new_h = image_size, int(image_size * height / width)
    else:
        new_w, new_h = int(image_size * width / height), image_size
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left = (new_w - image_size) // 2
    top = (new_h - image_size) // 2
    return image.crop((left, top, left + image_size, top + image_size))


def preprocess_image(
    data: bytes, image_size: int, style: str, sample_id: str = "?", slot: int = 0
) -> np.ndarray:
    """Encoded bytes -> normalised float32 [image_size, image_size, 3]."""
    image = resize_image(decode_image(data, sample_id, slot), image_size, style)
    mean, std = normalisation_stats(style)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return (pixels - mean) / std


def check_image_bytes(data: bytes, sample_id: str = "?", slot: int = 0) -> None:
    """Verifies that bytes decode as an image (used at import time); raises BadSample if not."""
    decode_image(data, sample_id, slot)
