"""The train state: everything a resume needs, one pytree, one orbax checkpoint."""

from __future__ import annotations

from typing import Any

import jax
from flax import struct


class TrainState(struct.PyTreeNode):
    """step [] int32; params: the model tree {'vision', 'connector', 'llm'} (fp32 master weights);
    lora: {target: {'a': [layers, 1, d_in, R], 'b': [layers, 1, R, d_out]}} or {}; opt_state: over
    {'params', 'lora'}; rng: a PRNG key (uint32 [2]); method_state: a pytree dict the methods fill
    (e.g. 'task_weights' [T]); its structure is fixed when the state is created."""

    step: jax.Array
    params: Any
    lora: Any
    opt_state: Any
    rng: jax.Array
    method_state: Any

    @property
    def trainable(self) -> dict:
        return {"params": self.params, "lora": self.lora}
