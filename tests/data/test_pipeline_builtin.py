"""The pipeline on the built-in suite with its own tokenizer: every family tokenises and batches."""

from __future__ import annotations

import numpy as np

from jaxlvlm.data import batch as B
from jaxlvlm.data.builtin import list_families
from jaxlvlm.data.pipeline import DataConfig, ImageConfig, make_eval_batches, make_train_iterator
from jaxlvlm.data.tokenizer import load_tokenizer


def test_builtin_suite_through_the_pipeline():
    tokenizer = load_tokenizer("builtin")
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    img = ImageConfig(
        image_size=32, image_tokens_per_image=16, image_token_id=image_id, style="siglip"
    )
    families = list_families()
    cfg = DataConfig(
        sources=tuple(
            {"type": "builtin", "family": f, "split": "train", "num": 8} for f in families
        ),
        eval_sources=tuple(
            {"type": "builtin", "family": f, "split": "val", "num": 2} for f in families
        ),
        global_batch_size=16,
        eval_batch_size=8,
        buckets=(64, 128),
        max_images=2,
        num_epochs=1,
    )
    batches = list(make_train_iterator(cfg, tokenizer, img, None, seed=0))
    assert len(batches) == len(families) * 8 // 16
    task_ids = np.concatenate([b[B.TASK_IDS] for b in batches])
    assert np.bincount(task_ids).tolist() == [8] * len(families)  # task id = position of the spec
    for b in batches:
        image_tokens = (b[B.INPUT_IDS] == image_id).sum(1)
        np.testing.assert_array_equal(image_tokens, 16 * b[B.NUM_IMAGES])
        assert (b[B.LOSS_MASK].sum(1) > 0).all()
    assert set(np.concatenate([b[B.NUM_IMAGES] for b in batches]).tolist()) >= {0, 1, 2}
    evals = make_eval_batches(cfg, tokenizer, img, None)
    refs = [
        r
        for _, info in evals
        for r, ok in zip(info["references"], info["valid"], strict=True)
        if ok
    ]
    assert len(refs) == 2 * len(families)
