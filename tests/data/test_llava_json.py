"""LLaVA JSON/JSONL import: multi-image and text-only, every bad-input case, the skip policy."""

from __future__ import annotations

import json
import os

import pytest
from data_fixtures import png_bytes

from jaxlvlm.data.bad_samples import BadSample, BadSamplePolicy, TooManyBadSamples
from jaxlvlm.data.llava_json import read_llava_records
from jaxlvlm.data.sources import LlavaJsonSource


def _conv(question: str, answer: str = "red") -> list[dict]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


@pytest.fixture()
def image_root(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(png_bytes((255, 0, 0)))
    (root / "sub" / "b.png").write_bytes(png_bytes((0, 0, 255)))
    (root / "broken.png").write_bytes(b"\x89PNG this is not an image")
    (tmp_path / "outside.png").write_bytes(png_bytes((0, 255, 0)))
    os.symlink(tmp_path / "outside.png", root / "link.png")
    return root


GOOD = [
    {
        "id": "one",
        "image": "a.png",
        "conversations": _conv("<image>\nwhat colour"),
        "task": "colour",
    },
    {
        "id": "two",
        "image": ["a.png", "sub/b.png"],
        "conversations": _conv("<image><image>\nleft colour"),
    },
    {
        "id": "text",
        "conversations": _conv("what is 1 and 1", "2"),
        "task": "math",
        "scorer": "number",
    },
]


def _write_jsonl(path, entries, raw_lines=()):
    lines = [json.dumps(e) for e in entries] + list(raw_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reads_json_and_jsonl(tmp_path, image_root):
    (tmp_path / "d.json").write_text(json.dumps(GOOD))
    _write_jsonl(tmp_path / "d.jsonl", GOOD)
    for name in ("d.json", "d.jsonl"):
        records = read_llava_records(tmp_path / name, image_root)
        assert [r["id"] for r in records] == ["one", "two", "text"]
        assert records[0]["images"] == [(image_root / "a.png").read_bytes()]
        assert records[1]["images"] == [
            (image_root / "a.png").read_bytes(),
            (image_root / "sub" / "b.png").read_bytes(),
        ]
        assert records[2]["images"] == []
        assert [r["task"] for r in records] == ["colour", "default", "math"]
        assert records[2]["answer"] == "2" and records[2]["scorer"] == "number"
        assert records[0]["scorer"] == "exact_match"


BAD_CASES = [
    (
        "missing_image",
        {"id": "m", "image": "nope.png", "conversations": _conv("<image>\nq")},
        "nope.png",
    ),
    (
        "unreadable_image",
        {"id": "u", "image": "broken.png", "conversations": _conv("<image>\nq")},
        "cannot be decoded",
    ),
    (
        "image_outside_root",
        {"id": "e", "image": "../outside.png", "conversations": _conv("<image>\nq")},
        "outside the image root",
    ),
    (
        "image_outside_root",
        {"id": "l", "image": "link.png", "conversations": _conv("<image>\nq")},
        "outside the image root",
    ),
    (
        "no_assistant_turn",
        {"id": "n", "conversations": [{"from": "human", "value": "q"}]},
        "no 'gpt' turn",
    ),
    (
        "image_count_mismatch",
        {"id": "c", "image": "a.png", "conversations": _conv("<image><image>\nq")},
        "2 '<image>'",
    ),
    (
        "image_count_mismatch",
        {"id": "c0", "image": "a.png", "conversations": _conv("no placeholder")},
        "0 '<image>'",
    ),
]


@pytest.mark.parametrize(
    "reason,entry,needle", BAD_CASES, ids=[f"{c[0]}-{c[1]['id']}" for c in BAD_CASES]
)
def test_each_bad_case_names_sample_line_and_reason(tmp_path, image_root, reason, entry, needle):
    path = _write_jsonl(tmp_path / "d.jsonl", [GOOD[0], entry])
    with pytest.raises(BadSample) as e:
        read_llava_records(path, image_root)
    message = str(e.value)
    assert e.value.reason == reason
    assert f"'{entry['id']}'" in message and "d.jsonl:2" in message and needle in message
    # Absolute paths are refused too.
    if reason == "image_outside_root" and entry["id"] == "e":
        entry = dict(entry, image=str(tmp_path / "outside.png"))
        path = _write_jsonl(tmp_path / "d.jsonl", [entry])
        with pytest.raises(BadSample, match="image_outside_root"):
            read_llava_records(path, image_root)


def test_malformed_json_line(tmp_path, image_root):
    path = _write_jsonl(
        tmp_path / "d.jsonl", GOOD[:1], raw_lines=['{"id": "x", "conversations": [', "[1, 2]"]
    )
    with pytest.raises(BadSample, match=r"d.jsonl:2.*malformed_json.*not valid JSON"):
        read_llava_records(path, image_root)
    policy = BadSamplePolicy("skip", 10)
    assert [r["id"] for r in read_llava_records(path, image_root, policy)] == ["one"]
    assert policy.summary()["skipped_by_reason"] == {"malformed_json": 2}


def test_malformed_json_array_file_is_a_file_error(tmp_path, image_root):
    path = tmp_path / "d.json"
    path.write_text('[{"id": "a"},')
    with pytest.raises(ValueError, match="d.json is not valid JSON.*JSONL"):
        read_llava_records(path, image_root)


def test_skip_policy_counts_every_reason_and_caps(tmp_path, image_root):
    entries = [GOOD[0]] + [c[1] for c in BAD_CASES] + [GOOD[2]]
    path = _write_jsonl(tmp_path / "d.jsonl", entries, raw_lines=["not json"])
    policy = BadSamplePolicy("skip", max_bad_samples=len(BAD_CASES) + 1)
    records = read_llava_records(path, image_root, policy)
    assert [r["id"] for r in records] == ["one", "text"]
    summary = policy.summary()
    assert summary["skipped_total"] == len(BAD_CASES) + 1
    assert summary["skipped_by_reason"] == {
        "image_count_mismatch": 2,
        "image_outside_root": 2,
        "malformed_json": 1,
        "missing_image": 1,
        "no_assistant_turn": 1,
        "unreadable_image": 1,
    }
    assert "'m'" in summary["examples"]["missing_image"]
    with pytest.raises(TooManyBadSamples, match="max_bad_samples=3"):
        read_llava_records(path, image_root, BadSamplePolicy("skip", max_bad_samples=3))


def test_lazy_source_raises_per_sample(tmp_path, image_root):
    path = _write_jsonl(tmp_path / "d.jsonl", [GOOD[0], BAD_CASES[0][1]], raw_lines=["{oops"])
    source = LlavaJsonSource(path, image_root)
    assert len(source) == 3
    assert source[0]["id"] == "one"
    with pytest.raises(BadSample, match="missing_image"):
        source[1]
    with pytest.raises(BadSample, match="malformed_json"):
        source[2]
    assert source.location(2).endswith("d.jsonl:3")


def test_pipeline_over_a_llava_json_spec_skips_and_counts(
    tmp_path, image_root, chat_tokenizer, image_token_id
):
    from jaxlvlm.data.pipeline import DataConfig, ImageConfig, make_train_iterator

    path = _write_jsonl(
        tmp_path / "d.jsonl", [GOOD[0], BAD_CASES[0][1], GOOD[1], GOOD[2]], raw_lines=["{oops"]
    )
    spec = {"type": "llava_json", "path": str(path), "image_root": str(image_root)}
    cfg = DataConfig(
        sources=(spec,),
        global_batch_size=4,
        buckets=(64,),
        max_images=2,
        num_epochs=1,
        on_bad_sample="skip",
        max_bad_samples=2,
    )
    it = make_train_iterator(
        cfg, chat_tokenizer, ImageConfig(32, 4, image_token_id, "clip"), None, seed=0
    )
    batches = list(it)
    assert len(batches) == 1 and sorted(batches[0]["sample_index"].tolist()) == [-1, 0, 2, 3]
    summary = it.bad_sample_summary()
    assert summary["skipped_by_reason"] == {"malformed_json": 1, "missing_image": 1}
    assert "d.jsonl:2" in summary["examples"]["missing_image"]
