"""The PyTorch benchmark side in its own process: the protocol, its own allocator setting, and the
train-step benchmark's rounds against it (the model it saved is the one jaxlvlm trains)."""

import os

import numpy as np
import pytest

from tools.bench.torch_worker import TorchWorker
from tools.bench.train_step import bench_config


def test_rounds_against_a_worker_that_saved_the_model_jaxlvlm_trains():
    with TorchWorker(keep_host_memory=True) as worker:
        assert worker.pid != os.getpid()
        # Applied in the worker before torch started; not this test process's setting.
        assert worker.host_memory == "applied"
        # The one worker stands in for both PyTorch sides here (the kept side's keys are plumbing).
        sides = {"torch": worker, "torch_kept": worker}
        row = bench_config("tiny", iters=3, peak_flops=1e11, torch_sides=sides, rounds=3)
        assert row["torch_process"] == "own" and row["torch_host_memory"] == "applied"
        # jaxlvlm loaded what the worker saved, and both start from the same loss on one batch.
        np.testing.assert_allclose(row["first_loss_jax"], row["first_loss_torch"], rtol=1e-4)
        assert row["rounds"] == 3 and row["steps_per_block"] == 1
        assert len(row["jax_times_s"]) == len(row["torch_times_s"]) == 3
        medians = row["block_medians_s"]
        assert medians["jax"] == row["jax_times_s"]  # one timed step per block: its own median
        assert medians["torch"] == row["torch_times_s"]
        wins = sum(t > j for t, j in zip(medians["torch"], medians["jax"], strict=True))
        assert row["round_wins"] == wins
        low, high = row["paired_ci"]
        assert low <= row["paired_speedup"] <= high
        want = np.exp(np.mean(np.log(medians["torch"]) - np.log(medians["jax"])))
        np.testing.assert_allclose(row["paired_speedup"], want, rtol=1e-12)
        kept = np.exp(np.mean(np.log(medians["torch_kept"]) - np.log(medians["jax"])))
        np.testing.assert_allclose(row["paired_speedup_vs_torch_kept"], kept, rtol=1e-12)
        assert row["torch_kept_times_s"] == medians["torch_kept"]
        assert row["torch_page_faults_per_step"] >= 0 and row["torch_system_s_per_step"] >= 0
        assert worker.peak(256) > 0
        with pytest.raises(RuntimeError, match="'nonsense'"):
            worker._call({"op": "nonsense"})  # the worker answers the error and keeps serving
        assert len(worker.steps(warmup=0, iters=1)["times"]) == 1
    assert worker.proc.poll() == 0  # closing ends the process cleanly


def test_a_worker_that_dies_is_reported_with_the_request():
    worker = TorchWorker()
    assert worker.host_memory.startswith("not applied")
    worker.proc.kill()
    worker.proc.wait()
    with pytest.raises(RuntimeError, match=r"exited with status -9 during 'steps'"):
        worker.steps(warmup=0, iters=1)
    worker.close()
