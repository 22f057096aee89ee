"""BENCHMARKS.md's step-profile block from a tools.bench step_profile result (issue 19).

python -m tools.bench step_profile_table bench_results/step_profile/small.json [--write]

Per step: each framework's time in matmul work and in the rest (its own profiler), jaxlvlm's dot
fusions grouped by shape with their achieved GFLOP/s, and its largest other fusions. With --write
the block between the step-profile markers of BENCHMARKS.md is replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tools.bench.common import ROOT
from tools.bench.host import host_key, on_host
from tools.method_bench.readme_blocks import show_block

TOOL = "python -m tools.bench step_profile_table"


def table(res: dict, top: int = 12) -> list[str]:
    j, t, h = res["jax"], res["torch"], res["jax"]["hlo"]
    on = on_host(host_key(res))
    lines = [
        f"`{res['config']}`{on}, {res['iters']} profiled steps, load average {res['load_before'][0]:.1f}"
        f" before and {res['load_after'][0]:.1f} after ({res.get('time', '')}):",
        "",
        "| framework | ops per step (ms) | matmul work (ms) | the rest (ms) |",
        "| --- | --- | --- | --- |",
        f"| jaxlvlm (XLA thunks) | {j['total_ms']:.0f} | {h['dot_ms']:.0f} (dot fusions, "
        f"{h['dot_gflop']:.0f} GFLOP at {h['dot_gflops']:.0f} GFLOP/s) | {h['other_ms']:.0f} |",
        f"| PyTorch eager (aten ops, self time) | {t['total_ms']:.0f} | {t['matmul_ms']:.0f} "
        f"| {t['other_ms']:.0f} |",
        "",
        "jaxlvlm's dot fusions by shape (lhs x rhs -> out), the largest first:",
        "",
        "| shapes | count | ms per step | GFLOP/s |",
        "| --- | --- | --- | --- |",
    ]
    for d in h["dots_by_shape"][:top]:
        lines.append(f"| {d['shapes']} | {d['count']} | {d['ms']:.1f} | {d['gflops']:.0f} |")
    lines += ["", "jaxlvlm's largest other fusions:", "", "| fusion | output | ops | ms per step |",
              "| --- | --- | --- | --- |"]  # fmt: skip
    for name, ms, shape, ops in h["largest_others"][:top]:
        mix = ", ".join(f"{k} {v}" for k, v in ops.items())
        lines.append(f"| {name} | {shape} | {mix} | {ms:.1f} |")
    lines += ["", "PyTorch's largest ops:", "", "| op | ms per step |", "| --- | --- |"]
    for name, ms, _ in t["largest_ms"][:top]:
        lines.append(f"| {name} | {ms:.1f} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path")
    p.add_argument("--write", action="store_true", help="replace the block in BENCHMARKS.md")
    p.add_argument("--block", default="step-profile")
    p.add_argument("--file", default=os.path.join(ROOT, "BENCHMARKS.md"))
    a = p.parse_args(argv)
    with open(a.path) as f:
        show_block(table(json.load(f)), a.write, a.file, a.block, TOOL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
