"""One record -> one model-ready example (token ids, assistant mask, preprocessed images).

These run inside Grain's map (possibly in worker processes), so a bad sample is returned as a plain
marker ``{'bad': (reason, sample_id, detail, location)}`` (picklable) instead of an exception; the
batching side hands it to the BadSamplePolicy in the main process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from jaxlvlm.data.bad_samples import BadSample
from jaxlvlm.data.conversation import tokenize_for_training, tokenize_prompt
from jaxlvlm.data.images import preprocess_image
from jaxlvlm.data.records import validate_record


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """What the data path needs to know about the vision tower.

    image_size: square input size; image_tokens_per_image: placeholders per image (= connector
    outputs); image_token_id: the placeholder id; style: 'clip' | 'siglip' (resize + statistics).
    """

    image_size: int = 32
    image_tokens_per_image: int = 16
    image_token_id: int = 3
    style: str = "clip"

    @classmethod
    def from_lvlm_config(cls, config: Any) -> ImageConfig:
        """From a jaxlvlm.models.config.LVLMConfig."""
        return cls(
            image_size=config.vision.image_size,
            image_tokens_per_image=config.image_tokens_per_image,
            image_token_id=config.image_token_id,
            style=config.vision.style,
        )


def bad_marker(error: BadSample) -> dict[str, Any]:
    return {"bad": (error.reason, error.sample_id, error.detail, error.location)}


def marker_to_error(marker: dict[str, Any]) -> BadSample:
    reason, sample_id, detail, location = marker["bad"]
    return BadSample(reason, sample_id, detail, location)


def _resolve_task_id(
    record: dict[str, Any], task_id: int | None, task_names: Sequence[str], location: str
) -> int:
    if task_id is not None:
        return task_id
    if record["task"] not in task_names:
        raise BadSample(
            "unknown_task",
            record["id"],
            f"task {record['task']!r} is not in the run's task list {list(task_names)}; add it to data.tasks",
            location,
        )
    return list(task_names).index(record["task"])


def _images(
    record: dict[str, Any], count: int, image_cfg: ImageConfig, max_images: int, location: str
) -> np.ndarray:
    if count > max_images:
        raise BadSample(
            "too_many_images",
            record["id"],
            f"{count} images > data.max_images={max_images}; raise data.max_images",
            location,
        )
    size = image_cfg.image_size
    pixels = np.zeros((count, size, size, 3), np.float32)
    for slot in range(count):
        pixels[slot] = preprocess_image(
            record["images"][slot], size, image_cfg.style, record["id"], slot
        )
    return pixels


def prepare_train_example(
    raw: Any,
    *,
    tokenizer: PreTrainedTokenizerBase,
    image_cfg: ImageConfig,
    max_length: int,
    max_images: int,
    sample_index: int,
    task_id: int | None,
    task_names: Sequence[str] = (),
    location: str = "",
) -> dict[str, Any]:
    """A raw record -> {'input_ids' int32 [n], 'assistant_mask' bool [n], 'pixel_values' f32 [k,H,W,3],
    'num_images' k, 'task_id', 'sample_index', 'length' n}, or a bad marker."""
    try:
        record = validate_record(raw, location)
        tid = _resolve_task_id(record, task_id, task_names, location)
        pixels = _images(record, len(record["images"]), image_cfg, max_images, location)
        sample = tokenize_for_training(
            record,
            tokenizer,
            image_cfg.image_token_id,
            image_cfg.image_tokens_per_image,
            max_length,
        )
    except BadSample as e:
        return bad_marker(e.with_location(location))
    return {
        "input_ids": sample.input_ids,
        "assistant_mask": sample.assistant_mask,
        "pixel_values": pixels,
        "num_images": pixels.shape[0],
        "task_id": tid,
        "sample_index": sample_index,
        "length": len(sample.input_ids),
    }


def prepare_eval_example(
    raw: Any,
    *,
    tokenizer: PreTrainedTokenizerBase,
    image_cfg: ImageConfig,
    max_length: int,
    max_images: int,
    sample_index: int,
    task_id: int | None,
    task_names: Sequence[str] = (),
    location: str = "",
) -> dict[str, Any]:
    """A raw record -> a prompt example (as prepare_train_example, all-False assistant_mask) plus the
    host-side 'id', 'reference', 'scorer', 'task'; or a bad marker."""
    try:
        record = validate_record(raw, location)
        tid = _resolve_task_id(record, task_id, task_names, location)
        sample = tokenize_prompt(
            record,
            tokenizer,
            image_cfg.image_token_id,
            image_cfg.image_tokens_per_image,
            max_length,
        )
        count = sample.num_image_tokens // max(image_cfg.image_tokens_per_image, 1)
        pixels = _images(record, count, image_cfg, max_images, location)
    except BadSample as e:
        return bad_marker(e.with_location(location))
    return {
        "input_ids": sample.input_ids,
        "assistant_mask": sample.assistant_mask,
        "pixel_values": pixels,
        "num_images": count,
        "task_id": tid,
        "sample_index": sample_index,
        "length": len(sample.input_ids),
        "id": record["id"],
        "reference": record["answer"],
        "scorer": record["scorer"],
        "task": record["task"],
    }
