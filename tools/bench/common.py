"""Shared benchmark plumbing: machine facts, timing with warm-up, JSON output, bench model configs."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

from jaxlvlm.host_memory import status as host_memory_status
from tools.bench.host import cpu_identity

# The repository root (where BENCHMARKS.md and bench_results/ live).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Bench models: LLaVA (CLIP ViT + Llama) sizes. Batch/sequence chosen so one step is 0.05-10 s on a
# 2-core CPU. 'small' is the target config of issue 9 (tens of millions of parameters).
BENCH_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        vision=dict(hidden=64, layers=2, heads=4, inter=256, image=32, patch=8),
        text=dict(hidden=128, layers=2, heads=4, kv_heads=2, inter=352, vocab=1024),
        batch=4,
        seq=128,
    ),
    "small": dict(
        vision=dict(hidden=256, layers=4, heads=4, inter=1024, image=64, patch=8),
        text=dict(hidden=512, layers=6, heads=8, kv_heads=4, inter=1376, vocab=8192),
        batch=8,
        seq=256,
    ),
    "medium": dict(
        vision=dict(hidden=384, layers=6, heads=6, inter=1536, image=96, patch=8),
        text=dict(hidden=768, layers=8, heads=12, kv_heads=4, inter=2048, vocab=16384),
        batch=4,
        seq=512,
    ),
}


def machine_info() -> dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "cpu": cpu_identity(),
        "host_memory": host_memory_status(),
    }
    try:
        import jax

        info["jax"] = jax.__version__
        info["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception:  # noqa: BLE001 - info only
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except Exception:  # noqa: BLE001
        pass
    return info


def time_fn(fn: Callable[[], Any], warmup: int = 2, iters: int = 5) -> dict[str, float]:
    """Runs ``fn`` warmup + iters times (fn must block until its result is ready); seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "mean_s": statistics.fmean(times),
        "iters": iters,
        "times": times,
    }


def write_json(path: str, payload: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    payload = dict(payload, machine=machine_info(), time=time.strftime("%Y-%m-%d %H:%M:%S"))
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    print(f"wrote {path}")


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    widths = [max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in columns]
    print(" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(fmt(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)))
