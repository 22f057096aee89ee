"""One process of the multi-host test (run as a subprocess by test_multihost.py).

argv: out_dir num_processes process_id port. With 2 processes each has 4 CPU devices, joins
jax.distributed over loopback with gloo collectives and reads its own data shard through the real
pipeline; with 1 process (8 devices) it reads both shards itself (simulated process indices) and
concatenates them, which is the same global batch. Saves the final params (process 0) as .npz.
"""

import os
import sys

out_dir, nproc, pid, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={8 // nproc}"
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

import numpy as np  # noqa: E402

from configs.demo import get_config  # noqa: E402
from jaxlvlm.data.global_batch import to_global_batch  # noqa: E402
from jaxlvlm.data.pipeline import make_train_iterator  # noqa: E402
from jaxlvlm.train import setup as S  # noqa: E402
from jaxlvlm.train.checkpoint import Checkpointer  # noqa: E402
from jaxlvlm.train.distributed import maybe_initialize  # noqa: E402
from jaxlvlm.train.run_setup import prepare_run  # noqa: E402

STEPS = 3

c = get_config("test")
c.train.steps = STEPS
if nproc > 1:
    c.distributed.enabled = True
    c.distributed.coordinator_address = f"127.0.0.1:{port}"
    c.distributed.num_processes = nproc
    c.distributed.process_id = pid
    c.distributed.cpu_collectives = "gloo"
    maybe_initialize(c.distributed)
assert jax.device_count() == 8 and jax.process_count() == nproc

run = prepare_run(c, out_dir)
setup = S.plan_train_state(run.model, run.model_cfg, c, run.mesh, run.rules)
state = setup.create()
step = S.jit_train_step(run.model, setup, c, run.mesh, run.rules, len(run.task_names))

if nproc > 1:
    it = make_train_iterator(run.data_cfg, run.tokenizer, run.image_cfg, run.mesh, c.seed)
    next_batch = lambda: next(it)  # noqa: E731
else:
    shards = [
        make_train_iterator(
            run.data_cfg,
            run.tokenizer,
            run.image_cfg,
            None,
            c.seed,
            process_index=p,
            process_count=2,
        )
        for p in range(2)
    ]

    def next_batch():
        parts = [s.next_host_batch() for s in shards]
        local = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return to_global_batch(local, run.mesh, 1)


for _ in range(STEPS):
    state, metrics = step(state, next_batch())
    print("loss", float(metrics["loss"]), flush=True)

ckpt = Checkpointer(os.path.join(out_dir, f"ckpt{nproc}"))
ckpt.save(STEPS, state, {"process": jax.process_index()}, {})
ckpt.close()

from jax.experimental import multihost_utils  # noqa: E402

params = multihost_utils.process_allgather(state.params, tiled=True)
if jax.process_index() == 0:
    flat = {
        jax.tree_util.keystr(k): np.asarray(v)
        for k, v in jax.tree_util.tree_leaves_with_path(params)
    }
    np.savez(os.path.join(out_dir, f"params_{nproc}.npz"), **flat)
print("done", flush=True)
