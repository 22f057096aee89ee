"""Shapes without memory: the run's abstract batch and abstract train state over a mesh.

Nothing here allocates a parameter: every array is a ``jax.ShapeDtypeStruct`` carrying the sharding
the real run gives it, so a 13B model costs the same few seconds as the demo.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from jaxlvlm import sharding as shd
from jaxlvlm.data import batch as B
from jaxlvlm.models.config import LVLMConfig


@dataclasses.dataclass(frozen=True)
class BatchShape:
    """A global batch: rows, padded length (the longest bucket: the worst case for memory) and
    image slots per row (0 for a text-only model)."""

    rows: int
    length: int
    image_slots: int

    @classmethod
    def from_config(cls, config, model_cfg) -> BatchShape:
        slots = int(config.data.max_images) if isinstance(model_cfg, LVLMConfig) else 0
        return cls(int(config.data.global_batch_size), max(config.data.buckets), slots)

    @property
    def tokens(self) -> int:
        return self.rows * self.length


def abstract_batch(shape: BatchShape, model_cfg, mesh: Mesh) -> dict[str, jax.ShapeDtypeStruct]:
    """The batch contract of jaxlvlm.data.batch as ShapeDtypeStructs sharded over the batch axes:
    input_ids / attention_mask / targets int32 [B, L], loss_mask float32 [B, L], task_ids /
    sample_index int32 [B], and for an LVLM pixel_values float32 [B, N, H, W, 3], num_images [B]."""
    b, n = shape.rows, shape.length
    specs: dict[str, tuple[tuple[int, ...], Any]] = {
        B.INPUT_IDS: ((b, n), jnp.int32),
        B.ATTENTION_MASK: ((b, n), jnp.int32),
        B.TARGETS: ((b, n), jnp.int32),
        B.LOSS_MASK: ((b, n), jnp.float32),
        B.TASK_IDS: ((b,), jnp.int32),
        B.SAMPLE_INDEX: ((b,), jnp.int32),
    }
    if isinstance(model_cfg, LVLMConfig) and shape.image_slots:
        size = model_cfg.vision.image_size
        specs[B.PIXEL_VALUES] = ((b, shape.image_slots, size, size, 3), jnp.float32)
        specs[B.NUM_IMAGES] = ((b,), jnp.int32)
    return {
        k: jax.ShapeDtypeStruct(s, dt, sharding=shd.batch_sharding(mesh, len(s)))
        for k, (s, dt) in specs.items()
    }


def check_batch_divides(shape: BatchShape, mesh: Mesh) -> None:
    """The batch is split over ('data', 'fsdp'): its rows must divide evenly."""
    split = mesh.shape["data"] * mesh.shape["fsdp"]
    if shape.rows % split:
        raise ValueError(
            f"config.data.global_batch_size={shape.rows} does not divide over the mesh's "
            f"data x fsdp = {split} devices; use a multiple of {split}"
        )
