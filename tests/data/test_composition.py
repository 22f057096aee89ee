"""Composition: Dirichlet/IID client partitions, the growing pool, continual stages."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import make_records

from jaxlvlm.data import batch as B
from jaxlvlm.data.composition import (
    DataPool,
    client_sources,
    partition_dirichlet,
    partition_iid,
    record_labels,
    task_stream,
    weighted_mixture,
)
from jaxlvlm.data.pipeline import DataConfig, ImageConfig, make_train_iterator
from jaxlvlm.data.sources import ListSource

IMG = ImageConfig(image_size=32, image_tokens_per_image=4, image_token_id=3, style="clip")


@pytest.mark.parametrize("alpha", [0.1, 1.0, 100.0])
def test_dirichlet_partitions_cover_every_sample_once(alpha):
    labels = np.random.default_rng(0).integers(0, 5, size=500)
    parts = partition_dirichlet(labels, num_clients=7, alpha=alpha, seed=3)
    joined = np.concatenate(parts)
    assert len(joined) == 500 and sorted(joined.tolist()) == list(range(500))
    assert min(len(p) for p in parts) >= 1
    again = partition_dirichlet(labels, num_clients=7, alpha=alpha, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_dirichlet_skew_grows_as_alpha_shrinks():
    labels = np.repeat(np.arange(4), 250)

    def mean_label_entropy(alpha):
        ents = []
        for p in partition_dirichlet(labels, 8, alpha, seed=0):
            q = np.bincount(labels[p], minlength=4) / len(p)
            ents.append(-(q[q > 0] * np.log(q[q > 0])).sum())
        return np.mean(ents)

    assert mean_label_entropy(0.05) < mean_label_entropy(1.0) < mean_label_entropy(1000.0)
    assert mean_label_entropy(1000.0) > 0.95 * np.log(4)


def test_iid_partition_covers_and_balances():
    parts = partition_iid(103, 4, seed=1)
    assert sorted(np.concatenate(parts).tolist()) == list(range(103))
    assert sorted(len(p) for p in parts) == [25, 26, 26, 26]
    with pytest.raises(ValueError):
        partition_iid(3, 4, seed=0)


def test_client_iterators_read_only_their_partition(chat_tokenizer):
    records = make_records(24)
    source = ListSource(records)
    labels = record_labels(source, ["colour", "count"])
    parts = partition_dirichlet(labels, 3, alpha=0.5, seed=0)
    cfg = DataConfig(global_batch_size=4, buckets=(128,), max_images=2, num_epochs=1)
    for part, client in zip(parts, client_sources(source, parts, task_id=0), strict=True):
        it = make_train_iterator(cfg, chat_tokenizer, IMG, None, 0, sources=[client])
        seen = sorted(int(i) for b in it for i in b[B.SAMPLE_INDEX] if i >= 0)
        assert seen == part.tolist()  # sample_index refers to the shared source


def test_pool_grows_and_subsets_keep_global_indices(chat_tokenizer):
    pool = DataPool()
    first = pool.add(ListSource(make_records(10, seed=1)), task_id=0, name="a")
    second = pool.add(ListSource(make_records(6, seed=2)), task_id=1, name="b")
    assert first == range(0, 10) and second == range(10, 16) and len(pool) == 16
    assert pool.task_id_of(12) == 1 and pool.dataset_of(3) == "a" and pool.indices_of("b") == second
    assert pool[12] == make_records(6, seed=2)[2]
    assert "pool[12]" in pool.location(12)
    chosen = [1, 4, 11, 15]
    cfg = DataConfig(global_batch_size=4, buckets=(128,), max_images=2, num_epochs=1)
    batch = next(
        make_train_iterator(cfg, chat_tokenizer, IMG, None, 0, sources=[pool.subset(chosen)])
    )
    assert sorted(batch[B.SAMPLE_INDEX].tolist()) == chosen
    by_index = dict(zip(batch[B.SAMPLE_INDEX].tolist(), batch[B.TASK_IDS].tolist(), strict=True))
    assert by_index == {1: 0, 4: 0, 11: 1, 15: 1}
    with pytest.raises(IndexError):
        pool[16]


def test_task_stream_and_mixture_builders():
    a, b = ListSource(make_records(4)), ListSource(make_records(5))
    stages = task_stream([a, b], ["colour", "count"])
    assert [(s.name, s.task_id) for s in stages] == [("colour", 0), ("count", 1)]
    assert stages[1].task_source.source is b and stages[1].task_source.task_id == 1
    mix = weighted_mixture([a, b], [2.0, 1.0])
    assert [(m.task_id, m.weight) for m in mix] == [(0, 2.0), (1, 1.0)]
    with pytest.raises(ValueError):
        task_stream([a, b], ["x", "x"])
    with pytest.raises(ValueError):
        weighted_mixture([a, b], [1.0, 0.0])
