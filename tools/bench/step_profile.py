"""Where the train step's time goes, jaxlvlm vs PyTorch eager, from each framework's own profiler.

The same model, weights and batch as `python -m tools.bench train_step` (float32, AdamW with global
norm clipping). jaxlvlm: jax.profiler's trace of ``--iters`` steps (the perfetto JSON), each XLA
CPU thunk's time summed by name; PyTorch: torch.profiler's self CPU time per aten op. Both are
sorted into matmul work (dots, GEMMs, their fused forms) and the rest, per step.

python -m tools.bench step_profile --config small [--iters 4] [--out bench_results/step_profile/small.json]

jaxlvlm's optimized HLO is dumped too (XLA_FLAGS --xla_dump_to, set before jax is imported), so each
thunk is matched with its fused computation: every dot fusion gets its shapes, FLOPs and achieved
GFLOP/s (grouped by shape), and every other fusion its output shape and op mix (the largest ones).

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
import sys
import tempfile

import numpy as np

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


_FUSION = re.compile(
    r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+) fusion\(.*?\), kind=\w+, calls=%?([\w.\-]+)", re.M
)
_COMPUTATION = re.compile(r"^%?([\w.\-]+) (?:\(.*?\) -> .*? )?\{\n(.*?)\n\}", re.M | re.S)
_INSTR = re.compile(r"\s*(?:ROOT )?%?([\w.\-]+) = (\w+\[[\d,]*\])")
_DOT = re.compile(r"\s*(?:ROOT )?%?[\w.\-]+ = (\w+\[[\d,]*\]).*? dot\(%?([\w.\-]+), %?([\w.\-]+)\)")


def _dims(shape: str) -> list[int]:
    inner = shape[shape.index("[") + 1 : shape.index("]")]
    return [int(x) for x in inner.split(",") if x]


def _dots(body: str) -> list[tuple[str, float]]:
    """(description 'lhs x rhs -> out', FLOPs) of every dot in a fused computation's body."""
    shapes = {m.group(1): _dims(m.group(2)) for m in map(_INSTR.match, body.split("\n")) if m}
    out = []
    for line in body.split("\n"):
        m = _DOT.match(line) if " dot(" in line else None
        if not m:
            continue
        res, lhs, rhs = _dims(m.group(1)), shapes.get(m.group(2), []), shapes.get(m.group(3), [])
        contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", line)
        k = int(np.prod([lhs[int(c)] for c in contracting.group(1).split(",") if c]))
        out.append((f"{lhs}x{rhs}->{res}", 2.0 * float(np.prod(res)) * k))
    return out


def hlo_breakdown(hlo_text: str, per_step_ms: dict[str, float], top: int = 25) -> dict:
    """Thunk times joined with the optimized HLO: dot fusions grouped by shape with FLOPs and
    GFLOP/s, and the largest other fusions with their output shape and op mix."""
    comps = {m.group(1): m.group(2) for m in _COMPUTATION.finditer(hlo_text)}
    fusions = {m.group(1): (m.group(3), m.group(2)) for m in _FUSION.finditer(hlo_text)}
    groups: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
    others = []
    for name, ms in per_step_ms.items():
        comp, shape = fusions.get(name, ("", ""))
        dots = _dots(comps.get(comp, ""))
        if dots:
            g = groups[" | ".join(d for d, _ in dots)]
            g[0], g[1], g[2] = g[0] + ms, g[1] + sum(f for _, f in dots), g[2] + 1
        elif not name.startswith("end:"):
            ops = collections.Counter(re.findall(r" = \S+ ([a-z\-]+)\(", comps.get(comp, "")))
            others.append([name, ms, shape, dict(ops.most_common(4))])
    dot_ms = sum(g[0] for g in groups.values())
    dot_flop = sum(g[1] for g in groups.values())
    rows = sorted(groups.items(), key=lambda kv: -kv[1][0])
    return {
        "dot_ms": dot_ms,
        "dot_gflop": dot_flop / 1e9,
        "dot_gflops": dot_flop / 1e9 / (dot_ms / 1e3) if dot_ms else float("nan"),
        "dots_by_shape": [
            {
                "shapes": k,
                "ms": g[0],
                "gflop": g[1] / 1e9,
                "gflops": g[1] / 1e6 / g[0],
                "count": g[2],
            }
            for k, g in rows[:top]
        ],
        "other_ms": sum(o[1] for o in others),
        "largest_others": sorted(others, key=lambda o: -o[1])[:top],
    }


def _optimized_hlo(dump_dir: str) -> str:
    """The largest train-step module after optimizations in the dump (the step itself)."""
    paths = glob.glob(os.path.join(dump_dir, "*train_step*after_optimizations.txt"))
    if not paths:
        raise FileNotFoundError(f"no optimized train-step HLO in {dump_dir}")
    with open(max(paths, key=os.path.getsize)) as f:
        return f.read()


def profile_config(name: str, iters: int, dump_dir: str = "") -> dict:
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
    thunks = jax_thunk_times(jax_run, iters)
    jax_side = split(thunks, JAX_MATMUL, iters)
    if dump_dir:
        per_step = {k: v / iters / 1e3 for k, v in thunks.items()}
        jax_side["hlo"] = hlo_breakdown(_optimized_hlo(dump_dir), per_step)
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
    dump = tempfile.mkdtemp(prefix="step_profile_hlo_")
    if "jax" in sys.modules:
        raise RuntimeError("step_profile must set XLA_FLAGS before jax is imported")
    flags = f"--xla_dump_to={dump} --xla_dump_hlo_as_text --xla_dump_hlo_module_re=.*train_step.*"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    res = profile_config(a.config, a.iters, dump)
    for side in ("jax", "torch"):
        s = res[side]
        print(f"{side}: {s['total_ms']:.1f} ms per step in ops, matmul {s['matmul_ms']:.1f} "
              f"({s['matmul_share']:.0%}), other {s['other_ms']:.1f}")  # fmt: skip
        for k, v, mm in s["largest_ms"]:
            print(f"  {v:8.2f} ms  {'MM' if mm else '  '}  {k}")
    h = res["jax"]["hlo"]
    print(f"jax dot fusions: {h['dot_ms']:.1f} ms, {h['dot_gflop']:.1f} GFLOP, "
          f"{h['dot_gflops']:.0f} GFLOP/s; by shape:")  # fmt: skip
    for d in h["dots_by_shape"]:
        print(f"  {d['ms']:8.1f} ms {d['gflops']:6.0f} GFLOP/s x{d['count']:<3} {d['shapes']}")
    print(f"jax other fusions: {h['other_ms']:.1f} ms; largest:")
    for n, ms, shape, ops in h["largest_others"]:
        print(f"  {ms:8.2f} ms  {n}  {shape}  {ops}")
    print(f"load average before {res['load_before']}, after {res['load_after']}")
    write_json(a.out or os.path.join("bench_results", "step_profile", f"{a.config}.json"), res)
    return res


if __name__ == "__main__":
    main()
