"""The built-in suite's registry: determinism, disjoint splits, record contract, domains, errors."""

from __future__ import annotations

import time

import numpy as np
import pytest

from jaxlvlm.data.builtin import (
    SPLITS,
    BuiltinSource,
    list_domains,
    list_families,
    make_record,
    make_records,
    task_name,
)
from jaxlvlm.data.builtin.digits import load_digit_images, split_pool
from jaxlvlm.data.builtin.domains import COLOUR_NAMES
from jaxlvlm.data.builtin.scenes import SHAPE_NAMES, decode_png
from jaxlvlm.eval.scorers import list_scorers

FAMILIES = list_families()


def _content(record: dict) -> tuple:
    return (record["conversations"][0]["value"], record["answer"], tuple(record["images"]))


def test_registry_lists():
    assert set(FAMILIES) >= {
        "attribute",
        "counting",
        "spatial",
        "reading",
        "grounding",
        "mcq",
        "caption",
        "digits",
        "digit_pair",
        "arithmetic",
    }
    assert list_domains() == ["plain", "noisy", "textured", "palette"]


@pytest.mark.parametrize("family", FAMILIES)
def test_deterministic_by_seed_and_prefix_stable(family):
    first = make_records(family, "train", 12, seed=7)
    again = make_records(family, "train", 12, seed=7)
    assert first == again
    other = make_records(family, "train", 12, seed=8)
    assert [_content(r) for r in first] != [_content(r) for r in other]
    # Records are a function of their index: a prefix and a random access agree.
    assert make_records(family, "train", 5, seed=7) == first[:5]
    assert make_records(family, "train", 4, seed=7, start=8) == first[8:]
    assert make_record(family, "train", 3, seed=7) == first[3]


@pytest.mark.parametrize("family", FAMILIES)
def test_record_contract(family):
    for record in make_records(family, "val", 20, seed=1, image_size=40):
        assert set(record) == {"id", "images", "conversations", "task", "answer", "scorer"}
        human, gpt = record["conversations"]
        assert human["from"] == "human" and gpt["from"] == "gpt"
        assert gpt["value"] == record["answer"] and record["answer"]
        assert record["task"] == family
        assert record["scorer"] in list_scorers()
        assert human["value"].count("<image>") == len(record["images"])
        for data in record["images"]:
            assert isinstance(data, bytes) and data[:8] == b"\x89PNG\r\n\x1a\n"
            image = decode_png(data)
            assert image.shape == (40, 40, 3) and image.dtype == np.uint8
    ids = [r["id"] for r in make_records(family, "val", 20, seed=1)]
    assert len(set(ids)) == 20


@pytest.mark.parametrize("family", FAMILIES)
def test_splits_are_disjoint(family):
    contents = {split: make_records(family, split, 60, seed=0) for split in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not {r["id"] for r in contents[a]} & {r["id"] for r in contents[b]}
                assert not {_content(r) for r in contents[a]} & {_content(r) for r in contents[b]}
    if family == "arithmetic":
        # Text-only: the questions themselves never repeat across splits.
        questions = {
            s: {r["conversations"][0]["value"] for r in make_records(family, s, 150, seed=0)}
            for s in SPLITS
        }
        assert not questions["train"] & questions["test"]
        assert not questions["train"] & questions["val"]


def test_digit_pools_partition_the_real_images():
    images, labels = load_digit_images()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    pools = [set(split_pool(s).tolist()) for s in SPLITS]
    assert sum(len(p) for p in pools) == 1797
    assert set().union(*pools) == set(range(1797))
    assert not (pools[0] & pools[1]) and not (pools[0] & pools[2]) and not (pools[1] & pools[2])
    for split, pool in zip(SPLITS, pools, strict=True):
        for family in ("digits", "digit_pair"):
            for r in make_records(family, split, 30, seed=3, with_meta=True):
                assert set(r["meta"]["indices"]) <= pool


@pytest.mark.parametrize("family", ["attribute", "grounding", "digits", "reading"])
def test_domains_change_pixels_not_content(family):
    by_domain = {d: make_records(family, "train", 6, seed=5, domain=d) for d in list_domains()}
    plain = by_domain["plain"]
    for domain, records in by_domain.items():
        for p, r in zip(plain, records, strict=True):
            assert r["conversations"] == p["conversations"]
            assert r["task"] == task_name(family, domain)
            if domain != "plain":
                assert r["images"] != p["images"]
    # Backgrounds: white in plain, dark in the palette domain, varied when textured.
    corner = {d: decode_png(by_domain[d][0]["images"][0])[0, 0] for d in list_domains()}
    assert corner["plain"].tolist() == [255, 255, 255]
    assert corner["palette"].max() < 80
    textured = decode_png(by_domain["textured"][0]["images"][0]).astype(np.float32)
    assert textured[:, :, 0].std() > 3.0


def _template(prompt: str) -> str:
    """The question line of a prompt with colour and shape words replaced by 'X'."""
    lines = prompt.replace("<image>", "").strip().split("\n")
    words = []
    for word in lines[0].split():
        core = word.strip("?.,")
        singular = {core, core.removesuffix("s"), core.removesuffix("es")}
        words.append("X" if core in COLOUR_NAMES or singular & set(SHAPE_NAMES) else word)
    return " ".join(words)


def test_template_variety():
    for family in FAMILIES:
        templates = {
            _template(r["conversations"][0]["value"])
            for r in make_records(family, "train", 150, seed=2)
        }
        assert len(templates) >= 3, (family, templates)


def test_text_only_family_has_no_images():
    for r in make_records("arithmetic", "test", 20, seed=0):
        assert r["images"] == [] and "<image>" not in r["conversations"][0]["value"]


def test_builtin_source_random_access():
    source = BuiltinSource("counting", "test", 10, seed=4, domain="noisy", task="count-n")
    assert len(source) == 10
    assert source[7] == make_record("counting", "test", 7, 4, "noisy", task="count-n")
    with pytest.raises(IndexError, match="out of range"):
        source[10]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"family": "colours"}, "Unknown built-in family 'colours'"),
        ({"domain": "foggy"}, "Unknown built-in domain 'foggy'"),
        ({"split": "dev"}, "Unknown split 'dev'"),
        ({"seed": -1}, "non-negative integer"),
        ({"image_size": 8}, "too small"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    args = {"family": "attribute", "split": "train", "num": 2, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        make_records(**args)


def test_generation_speed_10k(capsys):
    """Generates 10k records over all families and domains; prints the time (not asserted)."""
    per = 10_000 // (len(FAMILIES) * len(list_domains()))
    start = time.perf_counter()
    total = 0
    for family in FAMILIES:
        for domain in list_domains():
            total += len(make_records(family, "train", per, seed=11, domain=domain))
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n[builtin suite] generated {total} records in {elapsed:.2f} s")
    assert total == per * len(FAMILIES) * len(list_domains())


def _questions(records: list[dict]) -> list[str]:
    return [r["conversations"][0]["value"].replace("<image>", "").strip() for r in records]


def test_domain_wording_gives_each_domain_its_own_questions_with_the_same_answers():
    """wording='domain': disjoint phrasings per domain, the same images and answers as 'shared'."""
    seen = {}
    for domain in list_domains():
        shared = make_records("digits", "test", 60, seed=3, domain=domain)
        own = make_records("digits", "test", 60, seed=3, domain=domain, wording="domain")
        assert [r["answer"] for r in own] == [r["answer"] for r in shared]
        assert [r["images"] for r in own] == [r["images"] for r in shared]
        assert [r["id"] for r in own] == [r["id"] for r in shared]
        seen[domain] = set(_questions(own))
        assert len(seen[domain]) == 3, (domain, seen[domain])  # every phrasing of the set is drawn
        # Stable per seed and split; a prefix and random access agree.
        assert own == make_records("digits", "test", 60, seed=3, domain=domain, wording="domain")
        source = BuiltinSource("digits", "test", 60, seed=3, domain=domain, wording="domain")
        assert source[17] == own[17]
    assert seen["plain"] == set(_questions(make_records("digits", "test", 60, seed=3)))
    domains = list(seen)
    for i, a in enumerate(domains):
        for b in domains[i + 1 :]:
            assert not seen[a] & seen[b], (a, b)
    # Another split draws other samples from the same per-domain set.
    train = set(_questions(make_records("digits", "train", 60, 3, "noisy", wording="domain")))
    assert train == seen["noisy"]


def test_wording_errors_name_the_key():
    with pytest.raises(ValueError, match="Unknown built-in wording 'dataset'.*'wording'"):
        make_records("digits", "train", 2, 0, wording="dataset")
    with pytest.raises(ValueError, match="'counting' has no per-domain phrasings.*'wording'"):
        BuiltinSource("counting", "train", 2, 0, wording="domain")


def test_wording_reaches_records_through_a_source_spec():
    from jaxlvlm.data.sources import source_from_spec

    spec = dict(type="builtin", family="digits", split="val", num=4, domain="palette",
                wording="domain", task="digits-palette")  # fmt: skip
    source = source_from_spec(spec, seed=0, image_size=32)
    assert source[2] == make_record("digits", "val", 2, 0, "palette", 32, task="digits-palette",
                                    wording="domain")  # fmt: skip
    with pytest.raises(ValueError, match="wording"):
        source_from_spec(dict(spec, wording="nope"), seed=0, image_size=32)
