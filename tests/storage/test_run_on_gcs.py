"""A run whose --workdir is gs://, end to end against the GCS emulator (subprocesses, tiny model):
killed with SIGKILL after its first checkpoint and rerun, it ends bitwise where a straight local run
ends, with its report, metrics and TensorBoard events in the bucket; then the export, conversion and
data-import tools write to the bucket and a run starts from that converted checkpoint (init_from)
and reads that TFDS dataset, both on gs://. Slow (five jaxlvlm processes): the path layer's
default-suite tests are in test_files_gcs.py."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from etils.epath import backend as epath_backend
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from test_main import BASE, ROOT, _restore  # noqa: E402

from jaxlvlm.files import files_under, read_json, run_path  # noqa: E402
from jaxlvlm.train.metrics import read_metrics  # noqa: E402


def _run(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    full = dict(os.environ, **env)
    full["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    full["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def _main(env: dict, workdir: str, *extra: str, check: bool = True):
    return _run(env, "-m", "jaxlvlm.main", f"--workdir={workdir}", *BASE, *extra, check=check)


def _fresh_listings() -> None:
    """Drops this process's cached gs:// directory listings (gcsfs keeps them; the subprocesses
    changed the bucket since)."""
    epath_backend.fsspec_backend.fs("gs://any").invalidate_cache()


def _steps(ckpt_dir: str) -> list[int]:
    _fresh_listings()
    return sorted(int(p.name) for p in run_path(ckpt_dir).iterdir() if p.name.isdigit())


def _llava_jsonl(root) -> tuple[str, str]:
    """8 LLaVA samples ('which colour' over solid squares) -> (jsonl path, image root)."""
    images = root / "images"
    images.mkdir(parents=True)
    colours = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
    lines = []
    for i in range(8):
        name = sorted(colours)[i % 3]
        Image.new("RGB", (32, 32), colours[name]).save(images / f"{i}.png")
        conv = [
            {"from": "human", "value": "<image>\nWhich colour is this?"},
            {"from": "gpt", "value": name},
        ]
        lines.append(json.dumps({"id": str(i), "image": f"{i}.png", "conversations": conv}))
    path = root / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path), str(images)


@pytest.mark.slow
def test_a_gcs_run_resumes_exactly_and_its_outputs_feed_the_tools(gcs_emulator, bucket, tmp_path):
    _, env = gcs_emulator
    local = str(tmp_path / "local")
    _main(env, local)
    wd = f"{bucket}/run"
    # Killed (SIGKILL) after step 4: the rerun resumes from checkpoint 3, read back from the bucket.
    proc = _main(env, wd, "--config.train.halt_after_steps=4", check=False)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert _steps(f"{wd}/checkpoints") == [3]
    _main(env, wd)
    _fresh_listings()
    assert not os.path.exists(os.path.join(ROOT, "gs:"))  # nothing went to a local 'gs:' dir

    s1, st1, data1, _ = _restore(local)
    s2, st2, data2, _ = _restore(wd)
    assert s1 == s2 == 6 and data1 == data2
    for (p, a), (_, b) in zip(
        jax.tree_util.tree_leaves_with_path(st1),
        jax.tree_util.tree_leaves_with_path(st2),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(p))

    names = files_under(wd)
    for name in ("report.md", "metrics.jsonl", "params.txt", "phase.json"):
        assert name in names, names
    assert any(n.startswith("tensorboard/events.out.tfevents") for n in names)
    train = [r for r in read_metrics(wd) if r["kind"] == "train"]
    assert {r["step"] for r in train} == set(range(1, 7))  # steps 1-3 kept across the kill
    assert "Steps 1..6" in run_path(f"{wd}/report.md").read_text()
    assert read_json(f"{wd}/phase.json")["resumed_from"] == 3

    # The tools on gs://: export the run, convert the export, import LLaVA data, train from both.
    _run(env, "tools/export_hf.py", "--workdir", wd, "--out", f"{bucket}/hf")
    _fresh_listings()
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(
        files_under(f"{bucket}/hf")
    )
    _run(env, "tools/convert_checkpoint.py", "--src", f"{bucket}/hf", "--out", f"{bucket}/ckpt")
    jsonl, images = _llava_jsonl(tmp_path / "raw")
    _run(env, "tools/import_llava_data.py", f"--split=train={jsonl}", "--image_root", images,
         "--data_dir", f"{bucket}/data", "--name", "colours")  # fmt: skip
    _fresh_listings()
    report = read_json(f"{bucket}/data/jaxlvlm_records/colours/1.0.0/import_report.json")
    assert report["bad_samples"]["train"]["skipped_total"] == 0
    wd2 = f"{bucket}/stage2"
    cache = str(tmp_path / "cache")  # the TFDS dataset is read from a local copy made here
    _run(
        dict(env, JAXLVLM_CACHE_DIR=cache),
        "-m",
        "jaxlvlm.main",
        f"--workdir={wd2}",
        "--config=configs/llava15.py:stage=2,test=true,steps=2,bf16=false,"
        f"init={bucket}/ckpt,data={bucket}/data/colours",
    )
    assert _steps(f"{wd2}/checkpoints") == [2]  # (listings refreshed)
    assert read_json(f"{wd2}/phase.json")["steps"] == 2
    assert os.listdir(cache)
