"""The train step's matmuls one by one: XLA (jitted dot_general) against PyTorch (torch.matmul on
transposed views, its BLAS) at every shape and transposition the step runs, side by side in one
process.

python -m tools.bench gemm_shapes [--config small] [--rounds 5] [--iters 5]
    [--out bench_results/gemm_shapes.json]
python -m tools.bench gemm_shapes --render 'bench_results/gemm_shapes/run*.json' [--write]
    (the BENCHMARKS block: medians and ranges over the valid runs)

Why: in the step's profile the dots' thunk times overlap (XLA runs the weight-gradient dots
asynchronously), so per-dot rates read there are not the dots' own. Here each dot runs alone, so
the two libraries' rates at the step's exact shapes compare directly, and the per-step sums (rate x
how often the step runs the dot) say how much of the step's gap the GEMMs explain.

The dots (derived from the config, float32): the text decoder's and LM head's projections
y = x W with x [T, d_in], W [d_in, d_out], T = batch x seq, in the three forms backprop runs:
  NN  forward          [T, d_in] x [d_in, d_out]
  NT  input gradient   [T, d_out] x [d_in, d_out]^T (contraction over W's second dim)
  TN  weight gradient  [T, d_in]^T x [T, d_out]     (contraction over the tokens)
and the causal attention of jaxlvlm's 'xla' backend per (batch, kv head) with the query heads of a
kv head stacked as rows (R = heads / kv_heads x seq): scores and the value product forward, their
four gradients. Each jax form also runs 'via NN': the transposed operand materialised by a copy
first, then an NN dot (the copy counted), which is what a custom VJP with explicit transposes
would run. The vision tower and connector (a few percent of the step's FLOPs) are left out.

Rounds interleave every dot and side so machine noise hits both alike; each reports the median of
its per-round medians. Other processes' CPU share and the load before and after are recorded; a
run above the tool's limit is marked invalid (tools/bench/quiet.py).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from tools.bench.common import BENCH_CONFIGS, ROOT, print_table, write_json
from tools.bench.host import on_host, one_host
from tools.bench.quiet import OthersMonitor, validity
from tools.method_bench.readme_blocks import write_block
from tools.method_bench.tables_common import fmt_range

TOOL = "python -m tools.bench gemm_shapes --render"

# lax.dot_general dimension numbers per form, operands stored as the step stores them.
_DIMS = {
    "NN": (((1,), (0,)), ((), ())),  # a [M, K], b [K, N]
    "NT": (((1,), (1,)), ((), ())),  # a [M, K], b [N, K]
    "TN": (((0,), (0,)), ((), ())),  # a [K, M], b [K, N]
}
_BATCHED_DIMS = {
    "NN": (((2,), (1,)), ((0,), (0,))),
    "NT": (((2,), (2,)), ((0,), (0,))),
    "TN": (((1,), (1,)), ((0,), (0,))),
}


def step_dots(cfg: dict) -> list[dict]:
    """The step's text-side dots: [{'name', 'form', 'batch', 'm', 'k', 'n', 'count'}], count = how
    many times one train step runs it (forward and backward, all layers)."""
    t = cfg["text"]
    tokens = cfg["batch"] * cfg["seq"]
    c, f, v, h, kv = t["hidden"], t["inter"], t["vocab"], t["heads"], t["kv_heads"]
    d = c // h
    layers = t["layers"]
    projections = {  # name: (d_in, d_out, per layer)
        "q_proj / o_proj": (c, c, 2),
        "k_proj / v_proj": (c, kv * d, 2),
        "gate_proj / up_proj": (c, f, 2),
        "down_proj": (f, c, 1),
    }
    dots = []
    for name, (d_in, d_out, per) in projections.items():
        n = per * layers
        dots += [
            dict(name=f"{name} forward", form="NN", batch=1, m=tokens, k=d_in, n=d_out, count=n),
            dict(name=f"{name} dx", form="NT", batch=1, m=tokens, k=d_out, n=d_in, count=n),
            dict(name=f"{name} dW", form="TN", batch=1, m=d_in, k=tokens, n=d_out, count=n),
        ]
    dots += [
        dict(name="lm_head forward", form="NN", batch=1, m=tokens, k=c, n=v, count=1),
        dict(name="lm_head dx", form="NT", batch=1, m=tokens, k=v, n=c, count=1),
        dict(name="lm_head dW", form="TN", batch=1, m=c, k=tokens, n=v, count=1),
    ]
    bk, rows, seq = cfg["batch"] * kv, (h // kv) * cfg["seq"], cfg["seq"]
    attn = [
        ("scores q.k", "NT", rows, d, seq),
        ("probs.v", "NN", rows, seq, d),
        ("d probs = dout.v", "NT", rows, d, seq),
        ("dv = probs^T.dout", "TN", seq, rows, d),
        ("dq = dscores.k", "NN", rows, seq, d),
        ("dk = dscores^T.q", "TN", seq, rows, d),
    ]
    dots += [
        dict(name=f"attention {nm}", form=fm, batch=bk, m=m, k=k, n=n, count=layers)
        for nm, fm, m, k, n in attn
    ]
    return dots


def _shapes(dot: dict) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The operands' stored shapes for the dot's form."""
    m, k, n, form = dot["m"], dot["k"], dot["n"], dot["form"]
    a = (k, m) if form == "TN" else (m, k)
    b = (n, k) if form == "NT" else (k, n)
    if dot["batch"] > 1:
        return (dot["batch"], *a), (dot["batch"], *b)
    return a, b


def flops(dot: dict) -> float:
    return 2.0 * dot["batch"] * dot["m"] * dot["k"] * dot["n"]


def operands(dot: dict, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The dot's two operands (float32, stored as the step stores them), the same for both sides."""
    rng = np.random.default_rng(seed)
    sa, sb = _shapes(dot)
    return (rng.standard_normal(sa, dtype=np.float32), rng.standard_normal(sb, dtype=np.float32))


def reference(dot: dict, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The product in numpy: [batch?, m, n]."""
    a = np.swapaxes(a, -1, -2) if dot["form"] == "TN" else a
    b = np.swapaxes(b, -1, -2) if dot["form"] == "NT" else b
    return a @ b


def jax_fns(dot: dict, a: np.ndarray, b: np.ndarray) -> dict[str, Callable]:
    """{'jax': the dot on the operands as stored, 'jax via NN' (forms NT, TN): the transposed
    operand materialised by a copy, then an NN dot}: () -> the product, computed."""
    import jax
    import jax.numpy as jnp

    a, b = jnp.asarray(a), jnp.asarray(b)
    batched = dot["batch"] > 1
    dims = (_BATCHED_DIMS if batched else _DIMS)[dot["form"]]
    nn_dims = (_BATCHED_DIMS if batched else _DIMS)["NN"]
    swap = (0, 2, 1) if batched else (1, 0)
    direct = jax.jit(lambda x, y: jax.lax.dot_general(x, y, dims)).lower(a, b).compile()
    out = {"jax": lambda: direct(a, b).block_until_ready()}
    if dot["form"] != "NN":

        def via_nn(x, y):
            # The barrier keeps the copy: without it XLA folds the transpose back into the dot.
            if dot["form"] == "TN":
                x = jax.lax.optimization_barrier(jnp.transpose(x, swap))
            else:
                y = jax.lax.optimization_barrier(jnp.transpose(y, swap))
            return jax.lax.dot_general(x, y, nn_dims)

        copied = jax.jit(via_nn).lower(a, b).compile()
        out["jax via NN"] = lambda: copied(a, b).block_until_ready()
    return out


def torch_fn(dot: dict, a: np.ndarray, b: np.ndarray) -> Callable:
    """() -> the product by torch.matmul, the transposed operand a view (BLAS transpose flags)."""
    import torch

    a, b = torch.from_numpy(a.copy()), torch.from_numpy(b.copy())
    if dot["form"] == "TN":
        a = a.transpose(-1, -2)
    elif dot["form"] == "NT":
        b = b.transpose(-1, -2)
    return lambda: torch.matmul(a, b)


def _median_of(fn: Callable, iters: int) -> float:
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(cfg: dict, rounds: int, iters: int) -> tuple[list[dict], dict]:
    """Per dot and side: median over rounds of the per-round median seconds, with the range."""
    dots = step_dots(cfg)
    fns = []
    for i, dot in enumerate(dots):
        a, b = operands(dot, seed=i)
        for side, fn in jax_fns(dot, a, b).items():
            fns.append((i, side, fn))
        fns.append((i, "torch", torch_fn(dot, a, b)))
    for _, _, fn in fns:  # warm up: compile caches, BLAS buffers
        fn()
        fn()
    times: dict[tuple[int, str], list[float]] = {}
    with OthersMonitor() as monitor:
        for _ in range(rounds):
            for i, side, fn in fns:
                times.setdefault((i, side), []).append(_median_of(fn, iters))
    rows = []
    for i, dot in enumerate(dots):
        row = dict(dot, gflop=flops(dot) / 1e9)
        for side in ("jax", "jax via NN", "torch"):
            ts = times.get((i, side))
            if ts is None:
                continue
            med = statistics.median(ts)
            row[f"{side} ms"] = 1e3 * med
            row[f"{side} range ms"] = f"{1e3 * min(ts):.2f}-{1e3 * max(ts):.2f}"
            row[f"{side} GFLOP/s"] = flops(dot) / med / 1e9
        row["torch / jax time"] = row["torch ms"] / row["jax ms"]
        rows.append(row)
    return rows, monitor.result()


def per_step(rows: list[dict]) -> dict:
    """Milliseconds per train step spent in these dots: each side, and jax taking for every dot the
    faster of its direct and via-NN forms."""
    total = {"jax": 0.0, "torch": 0.0, "jax best form": 0.0}
    for r in rows:
        total["jax"] += r["count"] * r["jax ms"]
        total["torch"] += r["count"] * r["torch ms"]
        best = min(r["jax ms"], r.get("jax via NN ms", float("inf")))
        total["jax best form"] += r["count"] * best
    return total


def _group(name: str) -> str:
    return "attention" if name.startswith("attention") else "projections"


def table(payloads: list[tuple[str, dict]]) -> list[str]:
    """The BENCHMARKS block of several runs' JSON ((path, payload)): per dot the rates as median
    [min-max] over the valid runs, then the per-step sums per group and in all."""
    valid = [(p, d) for p, d in payloads if not d["invalid"]]
    on = on_host(one_host(payloads))
    lines = [f"`{payloads[0][1]['config']}`{on}, {len(valid)} valid runs of {len(payloads)} "
             f"({', '.join(os.path.basename(p) for p, _ in valid)}); load average "
             f"{min(d['quiet']['load_before'][0] for _, d in valid):.1f}-"
             f"{max(d['quiet']['load_after'][0] for _, d in valid):.1f}, other processes at most "
             f"{max(d['quiet']['others_share'] for _, d in valid):.1%} of the CPU:", "",
             "| dot | form | shape (batch x m x k x n) | per step | XLA GFLOP/s | XLA via NN "
             "GFLOP/s | PyTorch GFLOP/s | PyTorch time / XLA time |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for i, r in enumerate(valid[0][1]["rows"]):
        runs = [d["rows"][i] for _, d in valid]
        via = [x["jax via NN GFLOP/s"] for x in runs if "jax via NN GFLOP/s" in x]
        lines.append(
            f"| {r['name']} | {r['form']} | {r['batch']} x {r['m']} x {r['k']} x {r['n']} | "
            f"{r['count']} | {fmt_range([x['jax GFLOP/s'] for x in runs], '{:.0f}')} | "
            f"{fmt_range(via, '{:.0f}') if via else '-'} | "
            f"{fmt_range([x['torch GFLOP/s'] for x in runs], '{:.0f}')} | "
            f"{fmt_range([x['torch / jax time'] for x in runs], '{:.2f}')} |"
        )
    lines += ["", "Milliseconds per train step in these dots (each dot's time x how often the step "
              "runs it; median [min-max] over the runs):", "",
              "| dots | GFLOP per step | XLA | XLA, faster form per dot | PyTorch |",
              "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for group in ("projections", "attention", "all"):
        sums = {"jax": [], "best": [], "torch": []}
        for _, d in valid:
            rows = [x for x in d["rows"] if group == "all" or _group(x["name"]) == group]
            total = per_step(rows)
            sums["jax"].append(total["jax"])
            sums["best"].append(total["jax best form"])
            sums["torch"].append(total["torch"])
        gflop = sum(x["count"] * x["gflop"] for x in valid[0][1]["rows"]
                    if group == "all" or _group(x["name"]) == group)  # fmt: skip
        lines.append(f"| {group} | {gflop:.0f} | {fmt_range(sums['jax'], '{:.0f}')} | "
                     f"{fmt_range(sums['best'], '{:.0f}')} | {fmt_range(sums['torch'], '{:.0f}')} |")  # fmt: skip
    invalid = [f"{os.path.basename(p)}: {'; '.join(d['invalid'])}" for p, d in payloads
               if d["invalid"]]  # fmt: skip
    if invalid:
        lines += ["", "Runs marked invalid by the tool (not in the figures above): "
                  + ", ".join(invalid) + "."]  # fmt: skip
    return lines


def render(pattern: str, write: bool, file: str) -> list[str]:
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no run JSON matches {pattern!r}: run the benchmark first")
    payloads = []
    for path in paths:
        with open(path) as f:
            payloads.append((path, json.load(f)))
    if all(d["invalid"] for _, d in payloads):
        raise ValueError(f"every run of {pattern!r} is marked invalid: nothing to report")
    lines = table(payloads)
    print("\n".join(lines))
    if write:
        write_block(file, "gemm-shapes", lines, tool=TOOL)
    return lines


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--render", default="", help="print (and --write) the block of runs' JSON")
    p.add_argument("--write", action="store_true", help="with --render: replace BENCHMARKS' block")
    p.add_argument("--file", default=os.path.join(ROOT, "BENCHMARKS.md"))
    p.add_argument("--config", default="small", choices=sorted(BENCH_CONFIGS))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--torch_threads", type=int, default=0, help="0: torch's default")
    p.add_argument("--out", default="bench_results/gemm_shapes.json")
    args = p.parse_args(argv)
    if args.render:
        return {"lines": render(args.render, args.write, args.file)}
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    rows, monitor = run(BENCH_CONFIGS[args.config], args.rounds, args.iters)
    spreads = {}
    invalid = validity(monitor, spreads)
    cols = ["name", "form", "batch", "m", "k", "n", "count", "jax GFLOP/s", "jax via NN GFLOP/s",
            "torch GFLOP/s", "torch / jax time"]  # fmt: skip
    print_table(rows, cols)
    totals = per_step(rows)
    print("ms per step in these dots:", {k: round(v, 1) for k, v in totals.items()})
    print("load before/after:", monitor["load_before"][0], monitor["load_after"][0],
          f"others' CPU share {monitor['others_share']:.1%}", "INVALID: " + "; ".join(invalid)
          if invalid else "valid")  # fmt: skip
    payload = {"config": args.config, "rounds": args.rounds, "iters": args.iters, "rows": rows,
               "per_step_ms": totals, "quiet": monitor, "invalid": invalid,
               "argv": ["python", "-m", "tools.bench", "gemm_shapes", *(argv or [])]}  # fmt: skip
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
