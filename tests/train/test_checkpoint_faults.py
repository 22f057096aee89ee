"""Checkpoint faults a long run meets: a damaged newest checkpoint, a failed save, leftovers of an
unfinished save, a damaged federated round, a record that cannot be written."""

from __future__ import annotations

import errno
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxlvlm import main as M
from jaxlvlm.files import StorageError, write_json_atomic
from jaxlvlm.train import phase as P
from jaxlvlm.train.checkpoint import (
    Checkpointer,
    CheckpointRestoreError,
    CheckpointSaveError,
    RoundCheckpoints,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _demo(steps=12):
    spec = importlib.util.spec_from_file_location("demo", os.path.join(ROOT, "configs", "demo.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("test")
    c.train.steps = steps
    c.train.checkpoint_every = 4
    c.train.keep_checkpoints = 3
    c.eval.enabled = False
    return c


class _Stop(Exception):
    pass


def _stop_after(monkeypatch, batches: int):
    """The phase's train loop sees its data end (like a killed process) after ``batches`` batches."""
    real = P.train_loop

    def loop(state, step_fn, data_iter, **kw):
        class Dying:
            n = 0

            def __next__(self):
                if Dying.n == batches:
                    raise _Stop()
                Dying.n += 1
                return next(data_iter)

            def get_state(self):
                return data_iter.get_state()

        return real(state, step_fn, Dying(), **kw)

    monkeypatch.setattr(P, "train_loop", loop)


def _params(state):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(state.params))]


def _truncate_arrays(step_dir: str) -> int:
    """Truncates every data file under ``step_dir``/state to half its size (a failing disk)."""
    n = 0
    for root, _, files in os.walk(os.path.join(step_dir, "state")):
        for name in files:
            path = os.path.join(root, name)
            size = os.path.getsize(path)
            if size > 64 and not name.startswith("_"):
                with open(path, "r+b") as f:
                    f.truncate(size // 2)
                n += 1
    return n


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Params of an uninterrupted 12-step run."""
    res = M.run(_demo(), str(tmp_path_factory.mktemp("straight")))
    return _params(res["state"])


def test_damaged_newest_checkpoint_is_skipped_and_the_run_finishes_bitwise(
    tmp_path, monkeypatch, straight, caplog
):
    workdir = str(tmp_path / "run")
    _stop_after(monkeypatch, 9)
    with pytest.raises(_Stop):
        M.run(_demo(), workdir)
    monkeypatch.undo()
    ckpts = os.path.join(workdir, "checkpoints")
    assert sorted(int(d) for d in os.listdir(ckpts) if d.isdigit()) == [4, 8]
    assert _truncate_arrays(os.path.join(ckpts, "8")) > 0
    res = M.run(_demo(), workdir)
    assert "step 8" in caplog.text and "cannot be restored" in caplog.text
    assert "resumed from checkpoint step 4 after skipping damaged step(s) [8]" in caplog.text
    moved = os.listdir(ckpts + "_damaged")
    assert len(moved) == 1 and moved[0].startswith("8-")  # kept, not deleted
    assert P.read_phase(workdir)["resumed_from"] == 4
    for got, want in zip(_params(res["state"]), straight, strict=True):
        np.testing.assert_array_equal(got, want)


def test_no_restorable_checkpoint_stops_listing_what_was_tried(tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    _stop_after(monkeypatch, 9)
    with pytest.raises(_Stop):
        M.run(_demo(), workdir)
    monkeypatch.undo()
    for step in ("4", "8"):
        _truncate_arrays(os.path.join(workdir, "checkpoints", step))
    with pytest.raises(CheckpointRestoreError, match=r"tried step 8: .*; step 4: ") as e:
        M.run(_demo(), workdir)
    assert "Nothing was moved or deleted" in str(e.value)
    assert M.exit_code(e.value) == 4
    assert not os.path.exists(os.path.join(workdir, "checkpoints_damaged"))


def test_failed_save_stops_with_one_sentence_and_the_rerun_resumes(tmp_path, monkeypatch, straight):
    workdir = str(tmp_path / "run")
    real_save = ocp.CheckpointManager.save

    def save(self, step, *a, **kw):
        if step == 8:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, step, *a, **kw)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    with pytest.raises(CheckpointSaveError) as e:
        M.run(_demo(), workdir)
    msg = str(e.value)
    assert "could not save checkpoint step 8 to" in msg and "No space left on device" in msg
    assert "the last good checkpoint is step 4" in msg and "rerunning the same command" in msg
    assert "\n" not in msg and M.exit_code(e.value) == 4
    monkeypatch.undo()
    res = M.run(_demo(), workdir)
    assert P.read_phase(workdir)["resumed_from"] == 4
    for got, want in zip(_params(res["state"]), straight, strict=True):
        np.testing.assert_array_equal(got, want)


def test_failed_async_write_is_reported_at_wait(tmp_path, monkeypatch):
    ck = Checkpointer(str(tmp_path), keep=2)
    tree = {"x": jnp.arange(4.0)}
    ck.save(1, tree, None, {})
    ck.wait()

    def broken(self):
        raise OSError(errno.EIO, "Input/output error")

    ck.save(2, tree, None, {})
    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", broken)
    with pytest.raises(CheckpointSaveError, match=r"step 2 .*Input/output error.*step 1"):
        ck.wait()
    monkeypatch.undo()
    ck.close()


def test_leftover_temporary_directories_are_removed_at_start(tmp_path, caplog):
    leftover = tmp_path / "checkpoints" / "12.orbax-checkpoint-tmp-1700000000"
    (leftover / "state").mkdir(parents=True)
    ck = Checkpointer(str(tmp_path))
    ck.close()
    assert not leftover.exists()
    assert "removed 1 temporary checkpoint directories" in caplog.text


def test_damaged_round_checkpoint_falls_back_to_the_previous_round(tmp_path):
    rounds = RoundCheckpoints(str(tmp_path), {"a": 1})
    for r in (1, 2):
        rounds.save(r, {"w": jnp.full((64, 64), float(r))}, {"rounds_log": [r]})
    rounds.close()
    _truncate_arrays(os.path.join(str(tmp_path), "rounds", "2"))
    rounds = RoundCheckpoints(str(tmp_path), {"a": 1})
    template = {"w": jnp.zeros((64, 64))}
    found = rounds.restore_newest(lambda r: (rounds.read_meta(r), rounds.restore(r, template)))
    rounds.close()
    done, (meta, state) = found
    assert done == 1 and meta["rounds_log"] == [1]
    np.testing.assert_array_equal(np.asarray(state["w"]), np.ones((64, 64)))


def test_a_record_that_cannot_be_written_names_the_file(tmp_path):
    # A path under a regular file fails for every user (root included), like a lost mount.
    (tmp_path / "afile").write_text("")
    with pytest.raises(StorageError, match="could not write the phase record .*phase.json") as e:
        write_json_atomic(str(tmp_path / "afile" / "phase.json"), {"a": 1}, what="phase record")
    assert M.exit_code(e.value) == 4
