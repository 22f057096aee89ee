"""Examples -> one padded host batch (numpy) in the layout of jaxlvlm/data/batch.py.

One length bucket per batch (the smallest configured bucket that holds the longest row), a fixed number
of image slots, right padding, and all-zero padding rows (sample_index -1) to fill a partial batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxlvlm.data import batch as B


def choose_bucket(length: int, buckets: Sequence[int]) -> int:
    """Index of the smallest bucket >= length. Raises ValueError if none is (a pipeline bug:
    examples are truncated to the longest bucket before they get here)."""
    for k, size in enumerate(sorted(buckets)):
        if length <= size:
            return k
    raise ValueError(f"length {length} exceeds the longest bucket {max(buckets)}")


def collate(
    rows: Sequence[dict[str, Any]],
    batch_size: int,
    seq_len: int,
    max_images: int,
    image_size: int,
    pad_id: int,
) -> dict[str, np.ndarray]:
    """Pads ``rows`` (prepared examples) into a batch of ``batch_size`` rows of length ``seq_len``.

    Returns: input_ids/attention_mask/targets int32 [B, L], loss_mask float32 [B, L],
    pixel_values float32 [B, max_images, S, S, 3], num_images/task_ids/sample_index int32 [B].
    """
    if len(rows) > batch_size:
        raise ValueError(f"{len(rows)} rows for a batch of {batch_size}")
    input_ids = np.full((batch_size, seq_len), pad_id, np.int32)
    attention = np.zeros((batch_size, seq_len), np.int32)
    targets = np.zeros((batch_size, seq_len), np.int32)
    loss_mask = np.zeros((batch_size, seq_len), np.float32)
    pixels = np.zeros((batch_size, max_images, image_size, image_size, 3), np.float32)
    num_images = np.zeros((batch_size,), np.int32)
    task_ids = np.zeros((batch_size,), np.int32)
    sample_index = np.full((batch_size,), -1, np.int32)
    for r, row in enumerate(rows):
        ids = row["input_ids"]
        n = len(ids)
        input_ids[r, :n] = ids
        attention[r, :n] = 1
        # targets[k] = input_ids[k + 1]; the last real position has no target.
        targets[r, : n - 1] = ids[1:]
        loss_mask[r, : n - 1] = row["assistant_mask"][1:]
        k = int(row["num_images"])
        pixels[r, :k] = row["pixel_values"][:k]
        num_images[r] = k
        task_ids[r] = row["task_id"]
        sample_index[r] = row["sample_index"]
    return {
        B.INPUT_IDS: input_ids,
        B.ATTENTION_MASK: attention,
        B.TARGETS: targets,
        B.LOSS_MASK: loss_mask,
        B.PIXEL_VALUES: pixels,
        B.NUM_IMAGES: num_images,
        B.TASK_IDS: task_ids,
        B.SAMPLE_INDEX: sample_index,
    }
