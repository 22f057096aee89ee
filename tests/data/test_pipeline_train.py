"""The Grain training pipeline: layout, determinism, exact resume, process shards, bad samples, mixtures."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from data_fixtures import make_records

from jaxlvlm.data import batch as B
from jaxlvlm.data.bad_samples import BadSample, TooManyBadSamples
from jaxlvlm.data.pipeline import DataConfig, ImageConfig, TaskSource, make_train_iterator
from jaxlvlm.data.sources import ListSource
from jaxlvlm.sharding import make_mesh

IMG = ImageConfig(image_size=32, image_tokens_per_image=4, image_token_id=3, style="clip")
CFG = DataConfig(
    global_batch_size=8, buckets=(32, 64, 128), max_images=2, tasks=("colour", "count")
)
RECORDS = make_records(40)


def _iterator(cfg=CFG, seed=0, records=RECORDS, mesh=None, tokenizer=None, **kw):
    return make_train_iterator(
        cfg, tokenizer, IMG, mesh, seed, sources=[TaskSource(ListSource(records))], **kw
    )


def _take(it, n):
    return [{k: np.asarray(v) for k, v in next(it).items()} for _ in range(n)]


def _same(a, b):
    return all(np.array_equal(a[k], b[k]) for k in B.BATCH_KEYS)


def test_global_batch_layout_and_sharding(chat_tokenizer):
    mesh = make_mesh((2, 4, 1))
    batch = next(_iterator(mesh=mesh, tokenizer=chat_tokenizer))
    assert set(batch) == set(B.BATCH_KEYS)
    L = batch[B.INPUT_IDS].shape[1]
    assert L in CFG.buckets
    assert batch[B.PIXEL_VALUES].shape == (8, 2, 32, 32, 3)
    for value in batch.values():
        assert isinstance(value, jax.Array)
        assert value.shape[0] == 8
        assert value.sharding.spec[0] == ("data", "fsdp")
        assert len(value.sharding.device_set) == 8
    ids, att, tgt, mask = (
        np.asarray(batch[k]) for k in (B.INPUT_IDS, B.ATTENTION_MASK, B.TARGETS, B.LOSS_MASK)
    )
    assert ids.dtype == np.int32 and mask.dtype == np.float32
    for r in range(8):
        n = int(att[r].sum())
        assert att[r, :n].all() and not att[r, n:].any()
        np.testing.assert_array_equal(tgt[r, : n - 1], ids[r, 1:n])
        assert not tgt[r, n - 1 :].any() and not mask[r, n - 1 :].any()
        assert mask[r].sum() > 0
        # Image tokens: num_images * tokens per image, never learned as targets.
        assert (ids[r] == 3).sum() == 4 * int(batch[B.NUM_IMAGES][r])
        assert not (mask[r] * (tgt[r] == 3)).any()
    # The smallest bucket holding the longest row.
    longest = int(att.sum(1).max())
    assert L == min(b for b in CFG.buckets if b >= longest)


def test_same_seed_same_batches_other_seed_differs(chat_tokenizer):
    a = _take(_iterator(seed=3, tokenizer=chat_tokenizer), 6)
    b = _take(_iterator(seed=3, tokenizer=chat_tokenizer), 6)
    c = _take(_iterator(seed=4, tokenizer=chat_tokenizer), 6)
    assert all(_same(x, y) for x, y in zip(a, b, strict=True))
    assert not all(
        np.array_equal(x[B.SAMPLE_INDEX], y[B.SAMPLE_INDEX]) for x, y in zip(a, c, strict=True)
    )


def test_epochs_are_permutations_with_new_order(chat_tokenizer):
    batches = _take(_iterator(seed=1, tokenizer=chat_tokenizer), 10)  # 80 samples = 2 epochs of 40
    order = np.concatenate([b[B.SAMPLE_INDEX] for b in batches])
    assert sorted(order[:40]) == list(range(40)) and sorted(order[40:]) == list(range(40))
    assert not np.array_equal(order[:40], order[40:])


def test_resume_mid_epoch_gives_exactly_the_following_batches(chat_tokenizer):
    straight = _take(_iterator(seed=5, tokenizer=chat_tokenizer), 9)
    first = _iterator(seed=5, tokenizer=chat_tokenizer)
    _take(first, 3)
    state = json.loads(json.dumps(first.get_state()))  # what a checkpoint stores
    resumed = _iterator(seed=5, tokenizer=chat_tokenizer)
    resumed.set_state(state)
    rest = _take(resumed, 6)
    assert all(_same(x, y) for x, y in zip(straight[3:], rest, strict=True))


def test_process_shards_are_disjoint_and_cover(chat_tokenizer):
    cfg = DataConfig(
        global_batch_size=6, buckets=(128,), max_images=2, tasks=CFG.tasks, num_epochs=1
    )
    seen = []
    for pi in range(3):
        it = _iterator(cfg, seed=2, tokenizer=chat_tokenizer, process_index=pi, process_count=3)
        rows = []
        for batch in it:
            assert batch[B.INPUT_IDS].shape == (2, 128)  # local rows = global / processes
            rows += [int(i) for i in batch[B.SAMPLE_INDEX] if i >= 0]
        assert len(rows) == len(set(rows))
        seen.append(set(rows))
    assert all(not (seen[a] & seen[b]) for a in range(3) for b in range(a + 1, 3))
    assert set().union(*seen) == set(range(40))


def test_finite_epochs_end_with_padding_rows(chat_tokenizer):
    cfg = DataConfig(
        global_batch_size=16, buckets=(128,), max_images=2, tasks=CFG.tasks, num_epochs=1
    )
    batches = list(_iterator(cfg, tokenizer=chat_tokenizer))
    assert len(batches) == 3  # 40 = 16 + 16 + 8 real rows
    last = batches[-1]
    assert (last[B.SAMPLE_INDEX] >= 0).sum() == 8
    pad = last[B.SAMPLE_INDEX] < 0
    assert not last[B.LOSS_MASK][pad].any() and not last[B.ATTENTION_MASK][pad].any()


def test_task_ids_from_task_names(chat_tokenizer):
    batch = next(_iterator(tokenizer=chat_tokenizer))
    for sid, tid in zip(batch[B.SAMPLE_INDEX], batch[B.TASK_IDS], strict=True):
        assert CFG.tasks[tid] == RECORDS[sid]["task"]


def _with_bad(records):
    bad = [dict(records[0], id="bad_count", images=[]), dict(records[1], id="bad_len")]
    # 'bad_len' gets a question too long for the largest bucket before its answer.
    bad[1]["conversations"] = [
        {"from": "human", "value": "<image>\n" + "what colour is the square " * 40},
        {"from": "gpt", "value": "red"},
    ]
    return records[:10] + bad


def test_bad_samples_error_policy_names_the_sample(chat_tokenizer):
    cfg = DataConfig(
        global_batch_size=4, buckets=(64,), max_images=2, tasks=CFG.tasks, num_epochs=1
    )
    with pytest.raises(BadSample, match=r"'bad_(count|len)'"):
        list(_iterator(cfg, records=_with_bad(RECORDS), tokenizer=chat_tokenizer))


def test_bad_samples_skip_policy_counts_and_restores(chat_tokenizer):
    cfg = DataConfig(
        global_batch_size=4,
        buckets=(64,),
        max_images=2,
        tasks=CFG.tasks,
        num_epochs=1,
        on_bad_sample="skip",
        max_bad_samples=2,
    )
    it = _iterator(cfg, records=_with_bad(RECORDS), tokenizer=chat_tokenizer)
    rows = [int(i) for b in it for i in b[B.SAMPLE_INDEX] if i >= 0]
    assert sorted(rows) == list(range(10))
    summary = it.bad_sample_summary()
    assert summary["skipped_by_reason"] == {"image_count_mismatch": 1, "too_long": 1}
    assert "bad_count" in summary["examples"]["image_count_mismatch"]
    restored = _iterator(cfg, records=_with_bad(RECORDS), tokenizer=chat_tokenizer)
    restored.set_state(json.loads(json.dumps(it.get_state())))
    assert restored.bad_sample_summary() == summary
    # The cap counts over the run: one more epoch would exceed max_bad_samples=2.
    cfg2 = DataConfig(**{**cfg.__dict__, "num_epochs": 2})
    with pytest.raises(TooManyBadSamples, match="max_bad_samples=2"):
        list(_iterator(cfg2, records=_with_bad(RECORDS), tokenizer=chat_tokenizer))


def test_weighted_mixture_follows_weights_and_resumes(chat_tokenizer):
    a = ListSource(make_records(12, seed=1))
    b = ListSource(make_records(30, seed=2))
    sources = [TaskSource(a, 0, 3.0), TaskSource(b, 1, 1.0)]
    cfg = DataConfig(global_batch_size=8, buckets=(128,), max_images=2)

    def mk():
        return make_train_iterator(cfg, chat_tokenizer, IMG, None, 0, sources=sources)

    batches = _take(mk(), 8)
    task_ids = np.concatenate([x[B.TASK_IDS] for x in batches])
    assert (task_ids == 0).sum() == 48 and (task_ids == 1).sum() == 16  # exactly 3:1
    it = mk()
    _take(it, 5)
    state = it.get_state()
    again = mk()
    again.set_state(json.loads(json.dumps(state)))
    assert all(_same(x, y) for x, y in zip(batches[5:], _take(again, 3), strict=True))


def test_config_errors_are_named():
    with pytest.raises(KeyError, match="unknown keys \\['batch'\\]"):
        DataConfig.from_dict({"batch": 3})
    with pytest.raises(ValueError, match="on_bad_sample"):
        DataConfig(on_bad_sample="ignore")
    cfg = DataConfig.from_dict(
        {"buckets": [16, 32], "sources": [{"type": "builtin", "family": "x"}]}
    )
    assert cfg.buckets == (16, 32) and cfg.sources[0]["family"] == "x"


def test_batch_not_divisible_by_mesh_is_an_error(chat_tokenizer):
    cfg = DataConfig(global_batch_size=6, buckets=(128,), max_images=2, tasks=CFG.tasks)
    with pytest.raises(ValueError, match="not divisible by the 8 batch shards"):
        _iterator(cfg, mesh=make_mesh((8, 1, 1)), tokenizer=chat_tokenizer)
