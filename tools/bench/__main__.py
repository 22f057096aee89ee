"""python -m tools.bench <figure> [args]: dispatch to one benchmark module."""

from __future__ import annotations

import importlib
import sys

FIGURES = {
    "matmul_peak": "tools.bench.matmul_peak",
    "train_step": "tools.bench.train_step",
    "generation": "tools.bench.generation",
    "scaling": "tools.bench.scaling",
    "data": "tools.bench_data",
    "sample_vectors": "tools.bench.sample_vectors",
    "federated_round": "tools.bench.federated_round",
    "prompt_pool": "tools.bench.prompt_pool",
    "device_check": "tools.bench.device_check",
    "xla_cpu_flags": "tools.bench.xla_cpu_flags",
    "train_step_table": "tools.bench.train_step_table",
    "step_profile": "tools.bench.step_profile",
    "step_profile_table": "tools.bench.step_profile_table",
    "layouts": "tools.bench.layouts",
    "gemm_shapes": "tools.bench.gemm_shapes",
    "step_ab": "tools.bench.step_ab",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in FIGURES:
        print(f"usage: python -m tools.bench {{{','.join(FIGURES)}}} [args]")
        sys.exit(2)
    # Measure jaxlvlm as `python -m jaxlvlm.main` runs it: the same host-memory setting
    # (jaxlvlm/host_memory.py: on a CPU run freed buffers stay; JAXLVLM_KEEP_HOST_MEMORY=0). Before
    # any benchmark module can start JAX's backend.
    from jaxlvlm.host_memory import keep_freed_host_memory

    print(f"host memory: {keep_freed_host_memory()}")
    module = importlib.import_module(FIGURES[sys.argv[1]])
    module.main(sys.argv[2:])


if __name__ == "__main__":
    main()
