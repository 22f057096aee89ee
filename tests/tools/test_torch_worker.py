"""The PyTorch benchmark side in its own process: the protocol, its own allocator setting, and that
it trains the same saved model jaxlvlm loads."""

import os

import numpy as np
import pytest

from tools.bench.common import BENCH_CONFIGS
from tools.bench.hf_reference import make_inputs
from tools.bench.torch_worker import TorchWorker
from tools.bench.train_step import jax_batch, jax_train_step


def test_the_worker_trains_the_model_it_saved_for_jaxlvlm(tmp_path):
    with TorchWorker(keep_host_memory=True) as worker:
        assert worker.pid != os.getpid()
        # Applied in the worker before torch started; not this test process's setting.
        assert worker.host_memory == "applied"
        n_params = worker.build("tiny", str(tmp_path))
        assert n_params > 0 and (tmp_path / "model.safetensors").exists()
        torch_loss = worker.prepare()
        block = worker.steps(warmup=1, iters=2)
        assert len(block["times"]) == 2 and all(t > 0 for t in block["times"])
        assert block["steps"] == 3 and block["faults"] >= 0 and block["system_s"] >= 0
        assert worker.peak(256) > 0
        with pytest.raises(RuntimeError, match="'nonsense'"):
            worker._call({"op": "nonsense"})  # the worker answers the error and keeps serving
        assert len(worker.steps(warmup=0, iters=1)["times"]) == 1
    assert worker.proc.poll() == 0  # closing ends the process cleanly
    # jaxlvlm loads what the worker saved and starts from the same loss on the same batch.
    batch = jax_batch(make_inputs(BENCH_CONFIGS["tiny"]))
    _, _, _, jax_loss, _ = jax_train_step(str(tmp_path), batch)
    np.testing.assert_allclose(jax_loss, torch_loss, rtol=1e-4)


def test_a_worker_that_dies_is_reported_with_the_request():
    worker = TorchWorker()
    assert worker.host_memory.startswith("not applied")
    worker.proc.kill()
    worker.proc.wait()
    with pytest.raises(RuntimeError, match=r"exited with status -9 during 'steps'"):
        worker.steps(warmup=0, iters=1)
    worker.close()
