"""The files next to a model's weights that make it usable from transformers: the tokenizer (with its
chat template), the image processor config, and LlavaProcessor's own config.

The image processor reproduces jaxlvlm's preprocessing (jaxlvlm.data.images): CLIP resizes the short
side to ``image_size`` (bicubic) and centre-crops, SigLIP resizes straight to ``image_size`` square;
both rescale by 1/255 and normalise with the tower's mean/std. The JSON is written directly (it is
plain data) so no torchvision-backed processor class is needed to write it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from jaxlvlm.models.config import LVLMConfig, VisionConfig

_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
_BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, as transformers stores it


def image_processor_config(vision: VisionConfig) -> dict[str, Any]:
    """preprocessor_config.json of the tower's image processor (CLIPImageProcessor or
    SiglipImageProcessor) at the tower's image size."""
    size = vision.image_size
    common = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "rescale_factor": 1 / 255,
        "resample": _BICUBIC,
    }
    if vision.style == "clip":
        return {
            **common,
            "image_processor_type": "CLIPImageProcessor",
            "size": {"shortest_edge": size},
            "do_center_crop": True,
            "crop_size": {"height": size, "width": size},
            "image_mean": _CLIP_MEAN,
            "image_std": _CLIP_STD,
        }
    return {
        **common,
        "image_processor_type": "SiglipImageProcessor",
        "size": {"height": size, "width": size},
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }


def processor_config(cfg: LVLMConfig, image_token: str) -> dict[str, Any]:
    """processor_config.json of LlavaProcessor: how many ``<image>`` copies one image expands to."""
    return {
        "processor_class": "LlavaProcessor",
        "image_token": image_token,
        "patch_size": cfg.vision.patch_size,
        "vision_feature_select_strategy": cfg.vision_feature_select_strategy,
        # Positions the tower adds besides patches (CLIP's class token), which 'default' drops.
        "num_additional_image_tokens": 1 if cfg.vision.style == "clip" else 0,
    }


def write_processor_files(out_dir: str, config: Any, tokenizer: Any, image_token: str) -> None:
    """Writes the tokenizer (tokenizer.json, tokenizer_config.json, chat template) and, for an LVLM,
    preprocessor_config.json and processor_config.json into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    if isinstance(config, (LVLMConfig, VisionConfig)):
        vision = config.vision if isinstance(config, LVLMConfig) else config
        _write_json(
            os.path.join(out_dir, "preprocessor_config.json"), image_processor_config(vision)
        )
    if isinstance(config, LVLMConfig):
        _write_json(
            os.path.join(out_dir, "processor_config.json"), processor_config(config, image_token)
        )


def _write_json(path: str, data: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
