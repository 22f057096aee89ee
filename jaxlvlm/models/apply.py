"""One forward of a model on a batch dict (the batch contract of jaxlvlm.data.batch).

Images are optional: a text-only batch (no 'pixel_values') runs the decoder alone. Every step,
method and evaluation path goes through here, so the call is written once.
"""

from __future__ import annotations

from typing import Any

from flax import linen as nn


def apply_batch(model: nn.Module, params: Any, batch: dict, *, lowrank: Any = None, **kwargs):
    """model.apply on ``batch``: input_ids [B, L], attention_mask [B, L], and when present
    pixel_values [B, N, H, W, 3] with num_images [B]. kwargs go to the model (compute_logits,
    mutable, ...). Returns what the model returns (logits [B, L, V] by default)."""
    if "pixel_values" in batch:
        kwargs = {
            "pixel_values": batch["pixel_values"],
            "num_images": batch["num_images"],
            **kwargs,
        }
    return model.apply(
        {"params": params}, batch["input_ids"], batch["attention_mask"], lowrank=lowrank, **kwargs
    )
