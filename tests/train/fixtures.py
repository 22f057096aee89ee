"""Tiny LVLM runs for trainer tests: a config, a model and a batch with image placeholders."""

import numpy as np

from jaxlvlm.train.config_schema import base_config, set_model_size

VOCAB = 64
IMAGE_TOKEN = 3


def tiny_config(**train):
    c = base_config()
    set_model_size(c, "test")
    # Four query heads over two KV heads (GQA) and a fixed vocabulary, unlike the 'test' shrink.
    c.model.text = dict(
        c.model.text, num_heads=4, num_kv_heads=2, vocab_size=VOCAB, max_position_embeddings=64
    )
    c.model.image_token_id = IMAGE_TOKEN
    c.optim.warmup_steps = 0
    c.optim.lr = 1e-2
    c.optim.weight_decay = 0.01
    c.train.steps = 10
    c.train.update(train)
    return c


def tiny_batch(cfg, bsz=8, length=16, seed=0, num_tasks=3):
    """A batch in the contract of jaxlvlm/data/batch.py; even rows hold one image, odd rows none."""
    rng = np.random.RandomState(seed)
    t = cfg.image_tokens_per_image
    ids = rng.randint(4, VOCAB, (bsz, length)).astype(np.int32)
    num_images = (np.arange(bsz) % 2 == 0).astype(np.int32)
    ids[num_images == 1, 1 : 1 + t] = IMAGE_TOKEN
    attn = np.ones((bsz, length), np.int32)
    attn[:, length - 3 :] = (np.arange(bsz) % 3 != 0)[:, None]  # some right padding
    loss_mask = np.zeros((bsz, length), np.float32)
    loss_mask[:, 1 + t : length - 4] = 1.0
    return {
        "input_ids": ids,
        "attention_mask": attn,
        "targets": np.concatenate([ids[:, 1:], np.zeros((bsz, 1), np.int32)], axis=1),
        "loss_mask": loss_mask,
        "pixel_values": rng.randn(bsz, 1, 16, 16, 3).astype(np.float32),
        "num_images": num_images,
        "task_ids": (np.arange(bsz) % num_tasks).astype(np.int32),
        "sample_index": np.arange(bsz, dtype=np.int32),
    }
