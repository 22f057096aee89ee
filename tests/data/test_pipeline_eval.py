"""Eval batches: generation prompts with fixed shapes, host-side references, padding rows."""

from __future__ import annotations

import numpy as np
from data_fixtures import make_records

from jaxlvlm.data import batch as B
from jaxlvlm.data.pipeline import DataConfig, ImageConfig, TaskSource, make_eval_batches
from jaxlvlm.data.records import to_messages
from jaxlvlm.data.sources import ListSource
from jaxlvlm.sharding import make_mesh

IMG = ImageConfig(image_size=32, image_tokens_per_image=4, image_token_id=3, style="siglip")
RECORDS = make_records(13)


def _expand(ids, per_image=4, image_id=3):
    out = []
    for t in ids:
        out.extend([t] * per_image if t == image_id else [t])
    return out


def test_eval_prompts_references_and_padding(chat_tokenizer):
    cfg = DataConfig(eval_batch_size=8, buckets=(64, 128), max_images=2, tasks=("colour", "count"))
    out = make_eval_batches(
        cfg, chat_tokenizer, IMG, None, sources=[TaskSource(ListSource(RECORDS))]
    )
    assert len(out) == 2
    seen = []
    for batch, info in out:
        assert set(batch) == set(B.BATCH_KEYS)
        assert batch[B.INPUT_IDS].shape[0] == 8 and batch[B.INPUT_IDS].shape[1] in (64, 128)
        assert not batch[B.LOSS_MASK].any()
        for r in range(8):
            if not info["valid"][r]:
                assert batch[B.SAMPLE_INDEX][r] == -1 and not batch[B.ATTENTION_MASK][r].any()
                continue
            record = RECORDS[batch[B.SAMPLE_INDEX][r]]
            assert info["ids"][r] == record["id"]
            assert info["references"][r] == record["answer"]
            assert info["scorers"][r] == "exact_match" and info["tasks"][r] == record["task"]
            n = info["prompt_lengths"][r]
            assert batch[B.ATTENTION_MASK][r].sum() == n
            expected = chat_tokenizer.apply_chat_template(
                to_messages(record["conversations"][:-1]),
                add_generation_prompt=True,
                return_dict=False,
            )
            assert batch[B.INPUT_IDS][r, :n].tolist() == _expand(expected)
            assert batch[B.NUM_IMAGES][r] == len(record["images"])
            seen.append(record["id"])
    assert seen == [r["id"] for r in RECORDS]  # source order, each once
    assert sum(info["valid"].count(False) for _, info in out) == 3


def test_eval_processes_get_equal_batch_counts_and_cover(chat_tokenizer):
    cfg = DataConfig(eval_batch_size=4, buckets=(128,), max_images=2, tasks=("colour", "count"))
    sources = [TaskSource(ListSource(RECORDS))]
    per_process = [
        make_eval_batches(
            cfg, chat_tokenizer, IMG, None, sources=sources, process_index=p, process_count=2
        )
        for p in range(2)
    ]
    assert len(per_process[0]) == len(per_process[1])
    ids = [
        i
        for out in per_process
        for _, info in out
        for i, ok in zip(info["ids"], info["valid"], strict=True)
        if ok
    ]
    assert sorted(ids) == sorted(r["id"] for r in RECORDS)


def test_eval_global_arrays(chat_tokenizer):
    cfg = DataConfig(eval_batch_size=8, buckets=(128,), max_images=2, tasks=("colour", "count"))
    out = make_eval_batches(
        cfg,
        chat_tokenizer,
        IMG,
        make_mesh((8, 1, 1)),
        sources=[TaskSource(ListSource(RECORDS[:5]))],
    )
    batch, info = out[0]
    assert batch[B.PIXEL_VALUES].sharding.spec[0] == ("data", "fsdp")
    assert np.asarray(batch[B.SAMPLE_INDEX]).tolist() == [0, 1, 2, 3, 4, -1, -1, -1]
    assert info["valid"] == [True] * 5 + [False] * 3
