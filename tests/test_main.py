"""jaxlvlm.main end to end (subprocesses, tiny model): train, exact resume after a kill, eval mode,
the non-finite guard and config errors."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = [
    "--config=configs/demo.py:test",
    "--config.train.steps=6",
    "--config.train.checkpoint_every=3",
    "--config.train.log_every=1",
    "--config.eval.enabled=False",
]


def _main(workdir, *extra, check=True):
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, "-m", "jaxlvlm.main", f"--workdir={workdir}", *BASE, *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def _demo_families():
    sys.path.insert(0, ROOT)
    from configs.demo import DEMO_FAMILIES

    return DEMO_FAMILIES.split("+")


def _restore(workdir):
    """(params as host numpy, data state, config) of the latest checkpoint of ``workdir``."""
    import orbax.checkpoint as ocp

    mgr = ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"), item_names=("state", "data", "config")
    )
    step = mgr.latest_step()
    out = mgr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(),
            data=ocp.args.JsonRestore(),
            config=ocp.args.JsonRestore(),
        ),
    )
    mgr.close()
    return step, out["state"], out["data"], out["config"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("straight"))
    # Evaluation every 3 steps and at the end; it must not change the trained state (compared below
    # with a run that never evaluates).
    _main(wd, "--config.eval.enabled=True", "--config.train.eval_every=3")
    return wd


def test_train_writes_checkpoints_metrics_and_tables(straight):
    steps = sorted(int(s) for s in os.listdir(os.path.join(straight, "checkpoints")) if s.isdigit())
    assert steps == [3, 6]
    lines = [json.loads(x) for x in open(os.path.join(straight, "metrics.jsonl"))]
    train = [r for r in lines if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(r["loss"]) and "task_loss" in r and "mfu" in r for r in train)
    assert os.listdir(os.path.join(straight, "tensorboard"))
    assert "trainable" in open(os.path.join(straight, "params.txt")).read()
    evals = [r for r in lines if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [3, 6, 6]  # cadence, then the final evaluation
    assert set(evals[-1]) - {"step", "kind"} == set(_demo_families())
    report = open(os.path.join(straight, "report.md")).read()
    assert "## Per-task scores" in report and all(f"| {f} |" in report for f in _demo_families())
    assert os.path.exists(os.path.join(straight, "loss.png"))
    preds = [json.loads(x) for x in open(os.path.join(straight, "predictions.jsonl"))]
    assert len(preds) == 4 * len(_demo_families()) and all("score" in p for p in preds)


def test_resume_after_kill_is_exact(straight, tmp_path):
    wd = str(tmp_path / "killed")
    # Killed (SIGKILL) after step 4: step 4 is lost, the rerun resumes from checkpoint 3.
    proc = _main(wd, "--config.train.halt_after_steps=4", check=False)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert sorted(os.listdir(os.path.join(wd, "checkpoints"))) == ["3"]
    _main(wd)
    s1, st1, data1, _ = _restore(straight)
    s2, st2, data2, _ = _restore(wd)
    assert s1 == s2 == 6
    import jax

    for (p, a), (_, b) in zip(
        jax.tree_util.tree_leaves_with_path(st1),
        jax.tree_util.tree_leaves_with_path(st2),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(p))
    assert data1 == data2
    # The next batch from the restored iterator states is identical, bitwise.
    batches = []
    for data in (data1, data2):
        it = _iterator()
        it.set_state(data["process_0"])
        batches.append(it.next_host_batch())
    for k in batches[0]:
        np.testing.assert_array_equal(batches[0][k], batches[1][k], err_msg=k)


def _iterator():
    sys.path.insert(0, ROOT)
    from configs.demo import get_config
    from jaxlvlm.data.pipeline import DataConfig, ImageConfig, make_train_iterator
    from jaxlvlm.data.tokenizer import load_tokenizer
    from jaxlvlm.train.setup import model_config_from

    c = get_config("test")
    tok = load_tokenizer(c.tokenizer)
    cfg = model_config_from(c, tok)
    return make_train_iterator(
        DataConfig.from_dict(c.data), tok, ImageConfig.from_lvlm_config(cfg), None, c.seed
    )


def test_eval_mode_restores_and_scores(straight):
    _main(straight, "--config.mode=eval", "--config.eval.enabled=True")
    result = json.load(open(os.path.join(straight, "eval.json")))
    assert result["step"] == 6
    assert set(result["scores"]) == set(_demo_families())
    assert all(0.0 <= v <= 1.0 for v in result["scores"].values())
    report = open(os.path.join(straight, "report.md")).read()
    assert all(f"| {f} |" in report for f in _demo_families())


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    wd = str(tmp_path / "nan")
    # A huge learning rate without clipping overflows the parameters after the first update.
    proc = _main(
        wd,
        "--config.optim.lr=1e30",
        "--config.optim.max_grad_norm=0.0",
        "--config.optim.warmup_steps=0",
        "--config.train.checkpoint_every=1",
        check=False,
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "non-finite training signal" in proc.stderr
    assert "last good checkpoint is step" in proc.stderr
    bad_step = int(re.search(r"step (\d+): non-finite", proc.stderr).group(1))
    kept = sorted(int(s) for s in os.listdir(os.path.join(wd, "checkpoints")) if s.isdigit())
    assert kept and max(kept) < bad_step


def test_bad_config_key_is_named(tmp_path):
    proc = _main(str(tmp_path / "bad"), "--config.train.stepz=3", check=False)
    assert proc.returncode != 0
    assert "stepz" in proc.stderr
