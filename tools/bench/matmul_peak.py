"""Measured matmul peak of this machine (the denominator of MFU): n x n @ n x n in JAX.

python -m tools.bench matmul_peak [--n 2048] [--out bench_results/matmul_peak.json]
"""

from __future__ import annotations

import argparse

from tools.bench.common import print_table, time_fn, write_json


def measure_matmul_peak(n: int = 2048, dtype: str = "float32", iters: int = 10) -> float:
    """FLOP/s of a jitted n x n matmul (2 n^3 flops) in ``dtype`` with float32 accumulation."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), dtype=jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype=jnp.float32).astype(dtype)
    f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
    t = time_fn(lambda: f(a, b).block_until_ready(), warmup=3, iters=iters)
    return 2 * n**3 / t["min_s"]


def measure_torch_matmul_peak(n: int = 2048, iters: int = 10) -> float:
    """FLOP/s of PyTorch's float32 n x n matmul on this machine (its own BLAS, its own threads)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    t = time_fn(lambda: torch.mm(a, b), warmup=3, iters=iters)
    return 2 * n**3 / t["min_s"]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--out", default="bench_results/matmul_peak.json")
    args = p.parse_args(argv)
    rows = []
    for dtype in ("float32", "bfloat16"):
        rows.append(
            {"dtype": dtype, "n": args.n, "gflops": measure_matmul_peak(args.n, dtype) / 1e9}
        )
    print_table(rows, ["dtype", "n", "gflops"])
    write_json(args.out, {"rows": rows})
    return {"rows": rows}


if __name__ == "__main__":
    main()
