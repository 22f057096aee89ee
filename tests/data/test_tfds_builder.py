"""TFDS array_record round trip (no TensorFlow) and the import CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import tensorflow_datasets as tfds
from data_fixtures import make_records, png_bytes

from jaxlvlm.data.pipeline import DataConfig, ImageConfig, make_train_iterator
from jaxlvlm.data.tfds_builder import open_tfds_source, write_tfds_dataset

ROOT = Path(__file__).resolve().parents[2]


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        "import_llava_data", ROOT / "tools" / "import_llava_data.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_round_trip_through_tfds_data_source(tmp_path):
    records = make_records(12)
    path = write_tfds_dataset(
        tmp_path, "mini", {"train": lambda: records, "val": lambda: records[:4]}
    )
    source = open_tfds_source(tmp_path, "mini", "train")
    assert len(source) == 12 and len(open_tfds_source(tmp_path, "mini", "val")) == 4
    back = [source[i] for i in range(len(source))]
    assert sorted(r["index"] for r in back) == list(range(12))  # stored order kept in 'index'
    for r in back:
        original = records[r["index"]]
        for key in ("id", "images", "conversations", "task", "answer", "scorer"):
            assert r[key] == original[key], key
    # The plain tfds reader sees the same files (random access, no TensorFlow).
    raw = tfds.data_source("jaxlvlm_records/mini", data_dir=str(tmp_path), split="train")
    assert len(raw) == 12 and isinstance(raw[0]["images"][0] if raw[0]["images"] else b"", bytes)
    assert path == tmp_path / "jaxlvlm_records" / "mini" / "1.0.0"
    with pytest.raises(FileExistsError):
        write_tfds_dataset(tmp_path, "mini", {"train": lambda: records})


def test_duplicate_ids_are_refused(tmp_path):
    records = make_records(3)
    records[2]["id"] = records[0]["id"]
    with pytest.raises(ValueError, match="duplicate sample id 's0'"):
        write_tfds_dataset(tmp_path, "dup", {"train": lambda: records})


def test_import_cli_then_train_from_tfds(tmp_path, chat_tokenizer, image_token_id):
    images = tmp_path / "images"
    images.mkdir()
    (images / "r.png").write_bytes(png_bytes((255, 0, 0)))
    (images / "g.png").write_bytes(png_bytes((0, 255, 0), size=40))
    entries = [
        {
            "id": f"e{i}",
            "image": ["r.png", "g.png"][i % 2],
            "task": "colour",
            "conversations": [
                {"from": "human", "value": "<image>\nwhat colour"},
                {"from": "gpt", "value": ["red", "green"][i % 2]},
            ],
        }
        for i in range(6)
    ]
    entries.append(
        {"id": "missing", "image": "none.png", "conversations": entries[0]["conversations"]}
    )
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("\n".join(json.dumps(e) for e in entries) + "\n{broken\n")
    tool = _load_tool()
    argv = [
        "--data_dir",
        str(tmp_path / "dd"),
        "--name",
        "colours",
        "--split",
        f"train={jsonl}",
        "--image_root",
        str(images),
    ]
    with pytest.raises(Exception, match="missing"):
        tool.main(argv + ["--name", "strict"])
    report = tool.main(argv + ["--on_bad_sample", "skip", "--max_bad_samples", "5"])
    assert report["bad_samples"]["train"]["skipped_by_reason"] == {
        "malformed_json": 1,
        "missing_image": 1,
    }
    assert json.loads((Path(report["dataset_dir"]) / "import_report.json").read_text()) == report
    cfg = DataConfig(
        sources=(
            {"type": "tfds", "data_dir": str(tmp_path / "dd"), "name": "colours", "split": "train"},
        ),
        global_batch_size=6,
        buckets=(64,),
        num_epochs=1,
    )
    img = ImageConfig(32, 4, image_token_id, "clip")
    batches = list(make_train_iterator(cfg, chat_tokenizer, img, None, seed=0))
    assert len(batches) == 1 and sorted(batches[0]["sample_index"].tolist()) == list(range(6))
    assert batches[0]["pixel_values"].shape == (6, 1, 32, 32, 3)


def test_import_cli_skips_a_line_that_is_not_utf8(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "r.png").write_bytes(png_bytes((255, 0, 0)))

    def line(i: int, answer: str) -> bytes:
        entry = {
            "id": f"e{i}",
            "image": "r.png",
            "conversations": [
                {"from": "human", "value": "<image>\nwhat colour"},
                {"from": "gpt", "value": answer},
            ],
        }
        return json.dumps(entry, ensure_ascii=False).encode("utf-8") + b"\n"

    # Line 3 carries 'rouge vif \xe9' written in Latin-1: one byte 0xe9 that UTF-8 cannot decode.
    lines = [line(0, "red"), line(1, "café"), line(2, "rouge vif é").replace(b"\xc3\xa9", b"\xe9")]
    lines += [line(3, "red")]
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_bytes(b"".join(lines))
    tool = _load_tool()
    argv = ["--data_dir", str(tmp_path / "dd"), "--split", f"train={jsonl}"]
    argv += ["--image_root", str(images)]
    with pytest.raises(Exception, match=r"'e2' at .*train.jsonl:3.*not_utf8.*0xe9"):
        tool.main(argv + ["--name", "strict"])
    report = tool.main(argv + ["--name", "skipped", "--on_bad_sample", "skip"])
    assert report["bad_samples"]["train"]["skipped_by_reason"] == {"not_utf8": 1}
    source = open_tfds_source(tmp_path / "dd", "skipped", "train")
    assert sorted(source[i]["id"] for i in range(len(source))) == ["e0", "e1", "e3"]
