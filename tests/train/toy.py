"""A toy embedding->head 'LVLM' for step/optimizer tests that must not depend on the real model."""

import jax
import jax.numpy as jnp
import numpy as np

V, C, T = 11, 6, 3


def toy_params(seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    return {
        "vision": {"proj": jax.random.normal(k[0], (4, C)) * 0.1},
        "connector": {"bias": jnp.zeros((C,))},
        "llm": {"embed": jax.random.normal(k[1], (V, C)), "head": jax.random.normal(k[2], (C, V))},
    }


def toy_forward(params, lora, batch, method_state, rng):
    del lora, method_state, rng
    x = params["llm"]["embed"][batch["input_ids"]]  # [B, L, C]
    img = jnp.mean(batch["pixel_values"], axis=(1, 2, 3, 4))[:, None, None]  # [B, 1, 1]
    x = x + img * jnp.sum(params["vision"]["proj"], axis=0) + params["connector"]["bias"]
    return x @ params["llm"]["head"]


def toy_batch(bsz=8, length=5, seed=0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(0, V, (bsz, length)).astype(np.int32)
    mask = (rng.rand(bsz, length) > 0.3).astype(np.float32)
    mask[0] = 0.0  # a padding row
    return {
        "input_ids": ids,
        "attention_mask": np.ones((bsz, length), np.int32),
        "targets": np.roll(ids, -1, axis=1),
        "loss_mask": mask,
        "pixel_values": rng.rand(bsz, 1, 2, 2, 3).astype(np.float32),
        "num_images": np.ones((bsz,), np.int32),
        "task_ids": (np.arange(bsz) % T).astype(np.int32),
        "sample_index": np.arange(bsz, dtype=np.int32),
    }
