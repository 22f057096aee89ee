"""Where the train step's time goes, jaxlvlm vs PyTorch eager, from each framework's own profiler.

The same model, weights and batch as `python -m tools.bench train_step` (float32, AdamW with global
norm clipping). jaxlvlm: jax.profiler's trace of ``--iters`` steps (the perfetto JSON), each XLA
CPU thunk's time summed by name; PyTorch: torch.profiler's self CPU time per aten op. Both are
sorted into matmul work (dots, GEMMs, their fused forms) and the rest, per step.

python -m tools.bench step_profile --config small [--iters 4] [--out bench_results/step_profile/small.json]

Take it on a quiet machine (the tool records the load average before and after); the shares within
one framework are what it is for, the absolute times are the profiler's (with its overhead).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile

from tools.bench.common import BENCH_CONFIGS, write_json
from tools.bench.hf_reference import build_torch_llava, make_inputs, save_torch_llava
from tools.bench.train_step import jax_batch, jax_train_step, torch_train_step

# XLA CPU thunks that do matmul work: dots and convolutions, oneDNN / XNNPACK / YNNPACK calls
# (a library fusion is a matmul with its fused epilogue).
JAX_MATMUL = re.compile(r"(^|[._])(dot|convolution|conv|gemm|matmul|onednn|xnn|ynn)", re.I)
TORCH_MATMUL = re.compile(r"^aten::(mm|addmm|bmm|baddbmm|matmul|linear|_convolution|mkldnn)")
# Host-side wrappers in the JAX trace: not thunks, they contain them.
JAX_WRAPPERS = re.compile(r"PjitFunction|PjRt|Execute|^\$|Handle |Wait for|Parse|Allocate|Await")


def jax_thunk_times(run, iters: int) -> dict[str, float]:
    """{thunk name: total microseconds} over ``iters`` calls of ``run`` (already compiled)."""
    import jax

    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            for _ in range(iters):
                run()
        (path,) = glob.glob(os.path.join(d, "**", "perfetto_trace.json.gz"), recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    out: dict[str, float] = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and not JAX_WRAPPERS.search(e.get("name", "")):
            out[e["name"]] += float(e.get("dur", 0.0))
    return dict(out)


def torch_op_times(run, iters: int) -> dict[str, float]:
    """{aten op: total self CPU microseconds} over ``iters`` calls of ``run``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            run()
    return {
        e.key: float(e.self_cpu_time_total)
        for e in prof.key_averages()
        if e.key.startswith("aten::") and e.self_cpu_time_total > 0
    }


def split(times: dict[str, float], matmul: re.Pattern, iters: int, top: int = 25) -> dict:
    """Per step (ms): matmul work, the rest, and the largest entries."""
    per_step = {k: v / iters / 1e3 for k, v in times.items()}
    mm = sum(v for k, v in per_step.items() if matmul.search(k))
    total = sum(per_step.values())
    largest = sorted(per_step.items(), key=lambda kv: -kv[1])[:top]
    return {
        "total_ms": total,
        "matmul_ms": mm,
        "other_ms": total - mm,
        "matmul_share": mm / total if total else float("nan"),
        "largest_ms": [[k, v, bool(matmul.search(k))] for k, v in largest],
    }


def profile_config(name: str, iters: int) -> dict:
    cfg = BENCH_CONFIGS[name]
    torch_model = build_torch_llava(cfg)
    inputs = make_inputs(cfg)
    batch = jax_batch(inputs)
    with tempfile.TemporaryDirectory() as d:
        save_torch_llava(torch_model, d)
        jax_run, *_ = jax_train_step(d, batch)
    torch_run, _ = torch_train_step(torch_model, inputs)
    for _ in range(2):  # warm both
        jax_run()
        torch_run()
    load_before = os.getloadavg()
    jax_side = split(jax_thunk_times(jax_run, iters), JAX_MATMUL, iters)
    torch_side = split(torch_op_times(torch_run, iters), TORCH_MATMUL, iters)
    return {
        "config": name,
        "iters": iters,
        "jax": jax_side,
        "torch": torch_side,
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="small", choices=sorted(BENCH_CONFIGS))
    p.add_argument("--iters", type=int, default=4)
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    res = profile_config(a.config, a.iters)
    for side in ("jax", "torch"):
        s = res[side]
        print(f"{side}: {s['total_ms']:.1f} ms per step in ops, matmul {s['matmul_ms']:.1f} "
              f"({s['matmul_share']:.0%}), other {s['other_ms']:.1f}")  # fmt: skip
        for k, v, mm in s["largest_ms"]:
            print(f"  {v:8.2f} ms  {'MM' if mm else '  '}  {k}")
    print(f"load average before {res['load_before']}, after {res['load_after']}")
    write_json(a.out or os.path.join("bench_results", "step_profile", f"{a.config}.json"), res)
    return res


if __name__ == "__main__":
    main()
