"""Image preprocessing equals transformers' CLIP / SigLIP (PIL) image processors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from jaxlvlm.data.bad_samples import BadSample
from jaxlvlm.data.images import preprocess_image


def _png(shape, seed=0) -> tuple[Image.Image, bytes]:
    image = Image.fromarray(
        (np.random.default_rng(seed).random((*shape, 3)) * 255).astype(np.uint8)
    )
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return image, buf.getvalue()


@pytest.mark.parametrize("shape", [(40, 56), (56, 40), (32, 32), (17, 23)])
def test_matches_hf_processors(shape):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    image, data = _png(shape)
    clip = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    ref = clip(images=image, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
    np.testing.assert_allclose(preprocess_image(data, 32, "clip"), ref, atol=1e-6, rtol=0)
    siglip = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    ref = siglip(images=image, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
    np.testing.assert_allclose(preprocess_image(data, 32, "siglip"), ref, atol=1e-6, rtol=0)


def test_unreadable_bytes_name_sample_and_slot():
    with pytest.raises(BadSample, match=r"'x7'.*unreadable_image.*image 1"):
        preprocess_image(b"GIF89a garbage", 32, "clip", sample_id="x7", slot=1)
    with pytest.raises(BadSample, match="empty"):
        preprocess_image(b"", 32, "clip", sample_id="x7")


def test_grayscale_and_rgba_become_rgb():
    for mode in ("L", "RGBA", "P"):
        buf = io.BytesIO()
        Image.new(mode, (20, 20)).save(buf, format="PNG")
        assert preprocess_image(buf.getvalue(), 16, "siglip").shape == (16, 16, 3)
