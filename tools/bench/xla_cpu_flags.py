"""Which XLA CPU flags make jaxlvlm's train step faster, and do they change its results?

python -m tools.bench xla_cpu_flags --config small [--rounds 3] [--iters 6]
    [--flags "default;--xla_cpu_use_onednn=true;..."] [--out bench_results/xla_cpu_flags.json]
    (a set may also hold env:NAME=value tokens, set in its process's environment, e.g.
    "default;env:JAXLVLM_KEEP_HOST_MEMORY=1")
python -m tools.bench xla_cpu_flags --render bench_results/xla_cpu_flags_threads.json
    --block xla-cpu-flags-threads [--write]   (that run's table as a BENCHMARKS block)

XLA reads XLA_FLAGS once per process, so every flag set runs in a fresh process on the same saved
model and batch (tools/bench/hf_reference.py). Rounds interleave the flag sets (round 1: every
set, then round 2: every set, ...), so machine noise hits each alike; each set reports the median
of its rounds' median step times with the range, its speed relative to the default flags, and the
largest difference of its first three losses from the default's (results must not change beyond
float tolerance). Load averages before and after are recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from tools.bench.common import BENCH_CONFIGS, print_table, write_json
from tools.bench.host import host_key, on_host
from tools.bench.quiet import OthersMonitor
from tools.bench.render_block import add_render_args, render
from tools.bench.step_ab import interval_side, paired_speedup

TOOL = "python -m tools.bench xla_cpu_flags --render"
# the adoption rule of BENCHMARKS' plan: a flag set must be at least this much faster ...
ADOPT_SPEEDUP = 1.05
# ... and its first losses within this of the default's.
ADOPT_LOSS_DIFF = 1e-5

DEFAULT_FLAG_SETS = (
    "default",
    "--xla_cpu_use_onednn=true",  # oneDNN matmuls (the library PyTorch uses on x86)
    "--xla_cpu_experimental_onednn_fusion_type=dot",
    "--xla_cpu_use_xnnpack=true",
    "--xla_cpu_experimental_xnn_fusion_type=dot",
)


def split_set(flag_set: str) -> tuple[str, dict[str, str]]:
    """'--xla_a=1 env:NAME=value --xla_b=2' -> ('--xla_a=1 --xla_b=2', {'NAME': 'value'}): XLA
    flags for XLA_FLAGS and the environment variables of the set's process ('default' is none)."""
    flags, env = [], {}
    for token in flag_set.split():
        if token == "default":
            continue
        if token.startswith("env:"):
            name, sep, value = token[len("env:") :].partition("=")
            if not sep or not name:
                raise ValueError(f"'{token}' is not env:NAME=value (in the set '{flag_set}')")
            env[name] = value
        else:
            flags.append(token)
    return " ".join(flags), env


def worker(model_dir: str, batch_path: str, iters: int) -> dict:
    """In a fresh process: the jitted step's per-iteration seconds, its first three losses and its
    page faults and system seconds per step; host memory set as jaxlvlm.main sets it under the
    set's environment."""
    import time

    from jaxlvlm.host_memory import keep_freed_host_memory

    host_memory = keep_freed_host_memory()  # before jax_train_step starts the backend
    import jax

    from tools.bench.kernel_cost import KernelCost
    from tools.bench.train_step import jax_train_step

    batch = dict(np.load(batch_path))
    run, _, compile_s, first, _ = jax_train_step(model_dir, batch)
    losses = [first] + [float(run()) for _ in range(2)]
    times = []
    kernel = KernelCost()
    with kernel.over(iters):
        for _ in range(iters):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
    from tools.bench.matmul_peak import measure_matmul_peak

    matmul = measure_matmul_peak(2048, "float32")  # under the same flags: is it the GEMM?
    return {"times": times, "losses": losses, "compile_s": compile_s, "matmul_2048_flops": matmul,
            "jax": jax.__version__, "host_memory": host_memory,
            "page_faults_per_step": kernel.faults_per_step,
            "system_s_per_step": kernel.system_s_per_step}  # fmt: skip


def _run_set(flag_set: str, model_dir: str, batch_path: str, iters: int) -> dict:
    flags, extra_env = split_set(flag_set)
    env = dict(os.environ, JAX_PLATFORMS="cpu", **extra_env)
    env["XLA_FLAGS"] = flags
    cmd = [sys.executable, "-m", "tools.bench.xla_cpu_flags", "--worker", model_dir, batch_path,
           "--iters", str(iters)]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _range(row: dict) -> tuple[float, float]:
    low, high = row["range_s"].split("-")
    return float(low), float(high)


def verdict(row: dict, default: dict, rule: str = "ranges") -> str:
    """The plan's rule for one flag set against the default's row: 'adopt' only when its median
    step is at least 5% faster, its first losses are within 1e-5 and ('ranges') its range over the
    rounds does not overlap the default's or ('paired', for round-to-round noise as large as the
    effect) the 95% interval of its per-round paired speed-up lies above 1; otherwise what failed."""
    if "error" in row:
        return "did not run"
    failed = []
    if row["vs_default"] < ADOPT_SPEEDUP:
        failed.append("slower than the default" if row["vs_default"] < 1 else "under 5% faster")
    if rule == "paired":
        side = interval_side(*row["paired_ci"])
        if side != "above":
            failed.append(
                "paired interval below 1" if side == "below" else "paired interval reaches 1"
            )
    else:
        (low, high), (default_low, default_high) = _range(row), _range(default)
        if low <= default_high and high >= default_low:
            failed.append("ranges overlap")  # (a range wholly above the default's is "slower")
    if row["max_loss_diff"] > ADOPT_LOSS_DIFF:
        failed.append(f"losses differ by {row['max_loss_diff']:.1e}")
    return "adopt" if not failed else "no: " + ", ".join(failed)


def _header(rule: str) -> list[str]:
    if rule == "paired":
        return ["| flags | step s, median [range over rounds] | speed vs default | paired speed-up "
                "[95% interval] | tokens/s | largest first-loss difference | rule (>= 5% faster, "
                "paired interval above 1, losses 1e-5) |",
                "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    return ["| flags | step s, median [range over rounds] | speed vs default | tokens/s | "
            "largest first-loss difference | rule (>= 5% faster, ranges apart, losses 1e-5) |",
            "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip


def table(payload: dict, name: str) -> list[str]:
    """A run's BENCHMARKS block: per flag set the median step [range over rounds], its speed
    against the default, its first losses' largest difference and the plan's verdict."""
    quiet = payload["quiet"]
    default = next(r for r in payload["rows"] if r["flags"] == "default")
    rule = payload.get("rule", "ranges")
    on = on_host(host_key(payload))
    lines = [f"`{payload['config']}`{on}, {payload['rounds']} rounds of {payload['iters']} steps "
             f"({name}, {payload.get('time', 'time not recorded')}); load average "
             f"{quiet['load_before'][0]:.1f} before and {quiet['load_after'][0]:.1f} after, other "
             f"processes {quiet['others_share']:.1%} of the CPU:", "",
             *_header(rule)]  # fmt: skip
    for r in payload["rows"]:
        if "error" in r:
            blanks = "- | " * (5 if rule == "paired" else 4)
            lines.append(f"| `{r['flags']}` | {blanks}did not run: {r['error']} |")
            continue
        said = "(the reference)" if r is default else verdict(r, default, rule)
        paired = ""
        if rule == "paired":
            low, high = r["paired_ci"]
            paired = (
                "- | " if r is default else f"{r['paired_speedup']:.3f}x [{low:.3f}-{high:.3f}] | "
            )
        lines.append(f"| `{r['flags']}` | {r['step_s']:.3f} [{r['range_s']}] | "
                     f"{r['vs_default']:.3f}x | {paired}{r['tok_s']:.0f} | "
                     f"{r['max_loss_diff']:.1e} | {said} |")  # fmt: skip
    kernel = [f"`{r['flags']}` {r['page_faults_per_step']:,.0f} page faults and "
              f"{r['system_s_per_step']:.3f} s system CPU (host memory: "
              f"{'; '.join(r['host_memory'])})"
              for r in payload["rows"] if "page_faults_per_step" in r]  # fmt: skip
    if kernel:
        lines += ["", "Kernel work per step, median over the rounds: " + "; ".join(kernel) + "."]
    return lines


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="small", choices=sorted(BENCH_CONFIGS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--flags", default=";".join(DEFAULT_FLAG_SETS), help="';'-separated sets")
    p.add_argument("--out", default="bench_results/xla_cpu_flags.json")
    p.add_argument("--worker", nargs=2, metavar=("MODEL_DIR", "BATCH"))
    p.add_argument("--rule", default="ranges", choices=("ranges", "paired"),
                   help="the adoption rule (verdict)")  # fmt: skip
    add_render_args(p, "xla-cpu-flags")
    a = p.parse_args(argv)
    if a.render:
        return render(a, table, TOOL)
    if a.worker:
        print(json.dumps(worker(*a.worker, a.iters)))
        return {}
    from tools.bench.hf_reference import build_torch_llava, make_inputs, save_torch_llava
    from tools.bench.train_step import jax_batch

    sets = [s.strip() for s in a.flags.split(";") if s.strip()]
    for s in sets:
        split_set(s)  # a malformed set fails before any work
    monitor = OthersMonitor().__enter__()
    results: dict[str, list[dict]] = {s: [] for s in sets}
    with tempfile.TemporaryDirectory() as d:
        cfg = BENCH_CONFIGS[a.config]
        save_torch_llava(build_torch_llava(cfg), d)
        batch_path = os.path.join(d, "batch.npz")
        np.savez(batch_path, **jax_batch(make_inputs(cfg)))
        for _ in range(a.rounds):
            for s in sets:
                results[s].append(_run_set(s, d, batch_path, a.iters))
    monitor.__exit__()
    rows = _rows(results, cfg)
    print_table(rows, ["flags", "step_s", "range_s", "vs_default", "tok_s", "max_loss_diff",
                       "matmul_gflops", "compile_s", "error"])  # fmt: skip
    payload = {"config": a.config, "rounds": a.rounds, "iters": a.iters, "rows": rows,
               "raw": results, "quiet": monitor.result(), "rule": a.rule,
               "argv": argv if argv is not None else sys.argv[1:]}  # fmt: skip
    write_json(a.out, payload)
    return payload


def _kernel(rs: list[dict]) -> dict:
    """Median page faults and system seconds per step over a set's rounds (when recorded) and how
    its processes set host memory."""
    if not all("page_faults_per_step" in r for r in rs):
        return {}
    return {
        "page_faults_per_step": float(np.median([r["page_faults_per_step"] for r in rs])),
        "system_s_per_step": float(np.median([r["system_s_per_step"] for r in rs])),
        "host_memory": sorted({r["host_memory"] for r in rs}),
    }


def _rows(results: dict[str, list[dict]], cfg: dict) -> list[dict]:
    tokens = cfg["batch"] * cfg["seq"]
    ok = {s: [r for r in rs if "times" in r] for s, rs in results.items()}
    base = ok.get("default") or next(iter(ok.values()))
    base_s = float(np.median([np.median(r["times"]) for r in base])) if base else float("nan")
    base_loss = np.asarray(base[0]["losses"]) if base else None
    base_meds = [float(np.median(r["times"])) for r in base]
    rows = []
    for s, rs in ok.items():
        if not rs:
            rows.append({"flags": s, "error": results[s][0].get("error", "failed")})
            continue
        meds = [float(np.median(r["times"])) for r in rs]
        step = float(np.median(meds))
        # Paired by round (a set's process next to the default's); only when every round ran both.
        paired = (paired_speedup(base_meds, meds) if len(meds) == len(base_meds)
                  else (float("nan"),) * 3)  # fmt: skip
        rows.append({
            "flags": s,
            "step_s": step,
            "range_s": f"{min(meds):.3f}-{max(meds):.3f}",
            "vs_default": base_s / step,
            "paired_speedup": paired[0],
            "paired_ci": [paired[1], paired[2]],
            "tok_s": tokens / step,
            "max_loss_diff": float(np.max(np.abs(np.asarray(rs[0]["losses"]) - base_loss))),
            "compile_s": float(np.median([r["compile_s"] for r in rs])),
            "matmul_gflops": float(np.median([r["matmul_2048_flops"] for r in rs])) / 1e9,
            **_kernel(rs),
        })  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
