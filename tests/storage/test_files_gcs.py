"""jaxlvlm.files and the run-file writers against a GCS API on loopback (gcp-storage-emulator): the
same calls as on local disk, the atomic-write rules of object storage, and clear errors."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath

from jaxlvlm.convert.api import load_converted, read_converted_meta, save_converted
from jaxlvlm.data.tfds_builder import open_tfds_source, write_builtin_suite
from jaxlvlm.data.tokenizer import load_tokenizer
from jaxlvlm.eval.report import write_report
from jaxlvlm.files import (
    CACHE_ENV,
    StagedDirectory,
    StorageError,
    cached_copy,
    copy_tree,
    files_under,
    local_copy,
    local_output_dir,
    move_tree,
    read_json,
    read_jsonl,
    run_path,
    write_json_atomic,
)
from jaxlvlm.models.config import TextConfig
from jaxlvlm.train.checkpoint import RoundCheckpoints
from jaxlvlm.train.metrics import MetricsWriter, read_metrics


def test_run_path_keeps_urls_and_makes_local_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert os.fspath(run_path("gs://b-1/run")) == "gs://b-1/run"
    assert os.fspath(run_path("gs://b-1/run") / "checkpoints") == "gs://b-1/run/checkpoints"
    assert os.fspath(run_path("runs/x")) == os.fspath(tmp_path / "runs" / "x")


def test_json_records_round_trip_without_temporary_objects(bucket):
    path = f"{bucket}/run/phase.json"
    assert read_json(path) is None
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})  # an overwrite is one more whole-object upload
    assert read_json(path) == {"a": 2}
    # A remote write never goes through a renamed temporary object (not atomic on GCS).
    assert files_under(f"{bucket}/run") == ["phase.json"]


def test_a_write_that_fails_names_the_object(gcs_emulator):
    with pytest.raises(
        StorageError, match="could not write the summary gs://no-such-bucket/s.json"
    ):
        write_json_atomic("gs://no-such-bucket/s.json", {}, what="summary")


def test_trees_copy_and_move_between_disk_and_bucket(bucket, tmp_path):
    src = tmp_path / "src"
    (src / "sub" / "deep").mkdir(parents=True)
    (src / "sub" / "deep" / "w.bin").write_bytes(b"\x00\x01")
    (src / "dataset_info.json").write_text("{}")
    (src / "z.txt").write_text("z")
    order = copy_tree(src, f"{bucket}/tree", last="dataset_info.json")
    assert order[-1] == "dataset_info.json"  # the completeness marker goes last
    assert files_under(f"{bucket}/tree") == ["dataset_info.json", "sub/deep/w.bin", "z.txt"]
    move_tree(f"{bucket}/tree", f"{bucket}/moved/tree")
    assert not run_path(f"{bucket}/tree").exists()
    assert run_path(f"{bucket}/moved/tree/sub/deep/w.bin").read_bytes() == b"\x00\x01"
    with local_copy(f"{bucket}/moved/tree") as local:
        assert sorted(p.name for p in epath.Path(local).iterdir()) == [
            "dataset_info.json",
            "sub",
            "z.txt",
        ]
    with local_copy(f"{bucket}/moved/tree", recursive=False) as local:
        assert sorted(p.name for p in epath.Path(local).iterdir()) == ["dataset_info.json", "z.txt"]
    with local_output_dir(f"{bucket}/out") as local:
        (epath.Path(local) / "f.txt").write_text("x")
        assert not run_path(f"{bucket}/out/f.txt").exists()  # copied only when the block ends
    assert run_path(f"{bucket}/out/f.txt").read_text() == "x"


def test_cached_copy_downloads_once_and_redoes_an_incomplete_one(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    run_path(f"{bucket}/ds/a.txt").write_text("1")
    first = cached_copy(f"{bucket}/ds")
    assert epath.Path(first, "a.txt").read_text() == "1"
    run_path(f"{bucket}/ds/a.txt").write_text("2")
    assert cached_copy(f"{bucket}/ds") == first
    assert epath.Path(first, "a.txt").read_text() == "1"  # complete: reused, not downloaded again
    epath.Path(first, ".complete").unlink()  # as if the download had been killed
    assert epath.Path(cached_copy(f"{bucket}/ds"), "a.txt").read_text() == "2"


def test_staged_logs_are_uploaded_whole_and_appended_to_after_a_resume(bucket):
    stage = StagedDirectory(f"{bucket}/run", fetch=("log.jsonl",))
    with (stage.local / "log.jsonl").open("a") as f:
        f.write('{"step": 1}\n')
    assert stage.sync() == ["log.jsonl"]
    assert stage.sync() == []  # unchanged files are not uploaded again
    stage.close()
    assert not stage.local.exists()
    resumed = StagedDirectory(f"{bucket}/run", fetch=("log.jsonl",))
    with (resumed.local / "log.jsonl").open("a") as f:
        f.write('{"step": 2}\n')
    resumed.close()
    assert [r["step"] for r in read_jsonl(f"{bucket}/run/log.jsonl")] == [1, 2]


def test_metrics_events_and_report_land_in_the_bucket(bucket):
    wd = f"{bucket}/run"
    writer = MetricsWriter(wd, enabled=True, sync_every_s=1e9)
    writer.write(1, {"loss": 2.0, "task_loss": {"a": 2.0}, "task_tokens": {"a": 3}})
    writer.sync()
    writer.write(2, {"loss": 1.0, "task_loss": {"a": 1.0}, "task_tokens": {"a": 3}})
    writer.close()
    records = read_metrics(wd)
    assert [r["step"] for r in records] == [1, 2]
    assert any(n.startswith("tensorboard/events.out.tfevents") for n in files_under(wd))
    path = write_report(wd, records, {"a": 0.5}, chance={"a": 0.1})
    assert path == f"{wd}/report.md"
    report = run_path(path).read_text()
    assert "| a | 0.500 | 0.100 |" in report and "![loss](loss.png)" in report
    assert run_path(f"{wd}/loss.png").read_bytes()[:4] == b"\x89PNG"
    assert run_path(f"{wd}/scores.png").exists()


def test_round_checkpoints_on_gcs_restore_and_set_damage_aside(bucket):
    ckpt = RoundCheckpoints(f"{bucket}/run", {"fp": 1}, keep=3)
    for r in (1, 2):
        ckpt.save(r, {"w": jnp.full((4,), float(r))}, {"rounds_log": [r]})
    ckpt.wait()
    template = {"w": jnp.zeros((4,))}

    def restore(r):
        if r == 2:
            raise OSError("damaged")  # as a failed read of step 2 would
        return ckpt.read_meta(r), ckpt.restore(r, template)

    step, (meta, state) = ckpt.restore_newest(restore)
    ckpt.close()
    assert step == 1 and meta["rounds_log"] == [1]
    np.testing.assert_array_equal(np.asarray(state["w"]), np.ones(4))
    damaged = files_under(f"{bucket}/run/rounds_damaged")
    assert damaged and all(n.startswith("2-") for n in damaged)
    assert not run_path(f"{bucket}/run/rounds/2").exists()


def test_converted_checkpoint_and_tokenizer_on_gcs(bucket, tmp_path):
    cfg = TextConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_layers=1)
    params = {"embed": np.arange(128, dtype=np.float32).reshape(16, 8)}
    save_converted(f"{bucket}/ckpt", cfg, params)
    got_cfg, scanned = read_converted_meta(f"{bucket}/ckpt")
    assert got_cfg == cfg and scanned is False
    _, got = load_converted(f"{bucket}/ckpt")
    np.testing.assert_array_equal(np.asarray(got["embed"]), params["embed"])
    # A tokenizer directory next to a checkpoint's params/ (what convert_checkpoint writes).
    builtin = load_tokenizer("builtin")
    with local_output_dir(f"{bucket}/ckpt") as local:
        builtin.save_pretrained(local)
    remote = load_tokenizer(f"{bucket}/ckpt")
    text = "<|user|>3 plus 4?"
    assert remote(text)["input_ids"] == builtin(text)["input_ids"]
    assert remote.chat_template == builtin.chat_template


def test_tfds_dataset_written_to_and_read_from_gcs(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    write_builtin_suite(tmp_path / "data", ["digits"], {"train": 6}, seed=0)
    remote = write_builtin_suite(f"{bucket}/data", ["digits"], {"train": 6}, seed=0)
    assert os.fspath(remote["digits"]).startswith(f"{bucket}/data/")
    a = open_tfds_source(tmp_path / "data", "digits_plain", "train")
    b = open_tfds_source(f"{bucket}/data", "digits_plain", "train")
    assert len(a) == len(b) == 6
    for i in range(6):
        assert json.dumps(a[i], default=bytes.hex) == json.dumps(b[i], default=bytes.hex)
