"""BENCHMARKS.md's train-step table from repeated runs of tools.bench train_step (section 1).

python -m tools.bench train_step_table bench_results/train_step_quiet/run*.json [--write]

Only runs the tool marked valid count (quiet machine, small spread: tools/bench/quiet.py); each
figure is the median over them with the range; invalid runs are listed with their reasons. With
--write the block between the train-step markers of BENCHMARKS.md is replaced.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

from tools.bench.common import ROOT
from tools.bench.host import on_host, one_host
from tools.bench.step_ab import interval_side
from tools.method_bench.readme_blocks import show_block

TOOL = "python -m tools.bench train_step_table"


def _range(values, fmt: str) -> str:
    v = np.asarray(values, np.float64)
    med = fmt.format(float(np.median(v)))
    return med if len(v) == 1 else f"{med} [{fmt.format(v.min())}-{fmt.format(v.max())}]"


def table(paths: list[str]) -> list[str]:
    runs = []
    for p in sorted(paths):
        with open(p) as f:
            runs.append((os.path.basename(p), json.load(f)))
    host = one_host(runs)
    configs = list(dict.fromkeys(r["config"] for _, run in runs for r in run["rows"]))
    lines = [
        "| config | valid runs | jaxlvlm tok/s | PyTorch tok/s | ratio (PyTorch time / jaxlvlm time) "
        "| jaxlvlm MFU | PyTorch MFU | others' CPU share |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    invalid = []
    for c in configs:
        rows = [(name, r) for name, run in runs for r in run["rows"] if r["config"] == c]
        ok = [r for _, r in rows if r.get("valid")]
        invalid += [f"- {name} {c}: " + "; ".join(r.get("invalid_because") or ["no validity record"])
                    for name, r in rows if not r.get("valid")]  # fmt: skip
        if not ok:
            lines.append(f"| {c} | 0 of {len(rows)} | - | - | - | - | - | - |")
            continue
        lines.append(
            f"| {c} | {len(ok)} of {len(rows)} | {_range([r['jax_tok_s'] for r in ok], '{:,.0f}')} "
            f"| {_range([r['torch_tok_s'] for r in ok], '{:,.0f}')} "
            f"| {_range([r['speedup'] for r in ok], '{:.2f}x')} "
            f"| {_range([100 * r['jax_mfu'] for r in ok], '{:.0f}%')} "
            f"| {_range([100 * r['torch_mfu'] for r in ok], '{:.0f}%')} "
            f"| {_range([100 * r['machine']['others_share'] for r in ok], '{:.1f}%')} |"
        )
    peaks = [run.get("matmul_2048_flops", {}) for _, run in runs]
    lines += [
        "",
        "fp32 matmul 2048 (GFLOP/s, median [min-max] over the runs): JAX "
        + _range([p["jax"] / 1e9 for p in peaks if "jax" in p], "{:.0f}")
        + ", PyTorch "
        + _range([p["torch"] / 1e9 for p in peaks if "torch" in p], "{:.0f}")
        + "; MFU is against the faster of the two in each run. Nominal peak: "
        + next(
            (
                f"{run['nominal_fp32_peak']['flops'] / 1e9:.0f} GFLOP/s "
                f"({run['nominal_fp32_peak']['basis']})"
                for _, run in runs
                if run.get("nominal_fp32_peak")
            ),
            "unknown",
        )  # fmt: skip
        + ".",
    ]
    lines += own_process_lines(runs, configs)
    lines += paired_lines(runs, configs)
    lines += kernel_cost_lines(runs, configs)
    if on_host(host):
        lines += ["", f"Host: {host}."]
    if invalid:
        lines += ["", "Runs marked invalid by the tool (not in the figures above):", "", *invalid]
    return lines


def own_process_lines(runs, configs) -> list[str]:
    """Where PyTorch ran (runs from 2026-12-07 18:40 UTC record it: tools/bench/torch_worker.py),
    and, for runs with the --torch-kept-memory side, per config the ratio against PyTorch in its
    own process with jaxlvlm's host-memory setting (median [range] over the valid runs)."""
    where = sorted({r["torch_process"] for _, run in runs for r in run["rows"]
                    if "torch_process" in r})  # fmt: skip
    if not where:
        return []
    names = {"own": "its own process (as its users run it)",
             "shared": "jaxlvlm's process (sharing its allocator and host-memory setting)"}  # fmt: skip
    out = ["", "PyTorch ran in " + " and ".join(names[w] for w in where) + "."]
    for c in configs:
        ok = [r for _, run in runs for r in run["rows"]
              if r["config"] == c and r.get("valid") and "speedup_vs_torch_kept" in r]  # fmt: skip
        if ok:
            out.append(
                f"{c}, against PyTorch in its own process with jaxlvlm's host-memory setting "
                f"({len(ok)} valid run{'' if len(ok) == 1 else 's'}): PyTorch "
                f"{_range([r['torch_kept_tok_s'] for r in ok], '{:,.0f}')} tok/s, ratio "
                f"{_range([r['speedup_vs_torch_kept'] for r in ok], '{:.2f}x')}."
            )
    return out


# The paired rule (BENCHMARKS.md, question 16): at least this many runs on a quiet machine, each
# with its 95% paired interval above 1.00.
PAIRED_MIN_QUIET_RUNS = 2
BASELINES = (("torch", "PyTorch as shipped"), ("torch_kept", "PyTorch with jaxlvlm's setting"))


def paired(row: dict, side: str) -> dict:
    """The paired ratio of PyTorch side ``side`` to jaxlvlm in one run, from the run's raw block
    medians (train_step.paired_ratio: the geometric mean, its 95% interval, the rounds won)."""
    from tools.bench.train_step import paired_ratio

    medians = row["block_medians_s"]
    return paired_ratio(medians[side], medians["jax"], "")


def paired_verdict(results: list[tuple[bool, dict]]) -> str:
    """The paired rule over one config's runs against one baseline, given (machine quiet, paired
    result) per run: 'met' when at least PAIRED_MIN_QUIET_RUNS runs had a quiet machine and every
    quiet run's interval lies above 1.00; 'not met' when a quiet run's interval lies below 1.00;
    else 'undecided' (with why)."""
    sides = [interval_side(*p["paired_ci"]) for quiet, p in results if quiet]
    if "below" in sides:
        return "not met (a quiet run's interval lies below 1.00)"
    if len(sides) < PAIRED_MIN_QUIET_RUNS:
        return f"undecided ({len(sides)} quiet runs, {PAIRED_MIN_QUIET_RUNS} needed)"
    if all(side == "above" for side in sides):
        return f"met ({len(sides)} quiet runs, every interval above 1.00)"
    return "undecided (a quiet run's interval contains 1.00)"


def paired_lines(runs, configs) -> list[str]:
    """For runs of more than 2 rounds (--rounds): each run's paired ratio against each PyTorch side
    with its 95% interval and rounds won, whether the machine was quiet (the spread check does not
    enter: the interval carries the noise), and the paired rule's verdict per config."""
    out = []
    for c in configs:
        rows = [(name, r) for name, run in runs for r in run["rows"]
                if r["config"] == c and r.get("rounds", 2) > 2]  # fmt: skip
        if not rows:
            continue
        out.append("")
        sides = [(s, label) for s, label in BASELINES
                 if all(s in r["block_medians_s"] for _, r in rows)]  # fmt: skip
        # Each run's bootstrap once per side, for its line and for the verdict.
        results = {side: [paired(r, side) for _, r in rows] for side, _ in sides}
        for i, (name, r) in enumerate(rows):
            load = "quiet" if r["machine_quiet"] else "loaded"
            parts = []
            for side, label in sides:
                p = results[side][i]
                parts.append(
                    f"{label} {p['paired_speedup']:.3f}x [{p['paired_ci'][0]:.3f}-"
                    f"{p['paired_ci'][1]:.3f}], faster in {p['round_wins']} of {r['rounds']} rounds"
                )
            out.append(
                f"- {name} {c}, {r['rounds']} rounds of {r['steps_per_block']} steps, machine "
                f"{load} (others' CPU {100 * r['machine']['others_share']:.1f}%): paired ratio "
                "against " + "; against ".join(parts) + "."
            )
        for side, label in sides:
            quiet = [r["machine_quiet"] for _, r in rows]
            verdict = paired_verdict(list(zip(quiet, results[side], strict=True)))
            out.append(f"- {c}, paired rule against {label}: {verdict}.")
    return out


def kernel_cost_lines(runs, configs) -> list[str]:
    """Per config, the minor page faults and system CPU seconds per step of each side (median
    [range] over every run that recorded them, valid or not: the kernel's work does not depend on
    the load), and how the runs set host memory (jaxlvlm/host_memory.py)."""
    out = []
    settings = sorted({run.get("machine", {}).get("host_memory", "not recorded")
                       for _, run in runs})  # fmt: skip
    for c in configs:
        rows = [r for _, run in runs for r in run["rows"]
                if r["config"] == c and "jax_page_faults_per_step" in r]  # fmt: skip
        if not rows:
            continue
        out.append(
            f"{c}, kernel work per step over {len(rows)} runs (host memory: "
            f"{'; '.join(settings)}): minor page faults jaxlvlm "
            f"{_range([r['jax_page_faults_per_step'] for r in rows], '{:,.0f}')}, PyTorch "
            f"{_range([r['torch_page_faults_per_step'] for r in rows], '{:,.0f}')}; system CPU "
            f"seconds jaxlvlm {_range([r['jax_system_s_per_step'] for r in rows], '{:.3f}')}, "
            f"PyTorch {_range([r['torch_system_s_per_step'] for r in rows], '{:.3f}')}"
            + (
                "; PyTorch with jaxlvlm's setting: faults "
                f"{_range([r['torch_kept_page_faults_per_step'] for r in kept], '{:,.0f}')}, "
                f"system seconds "
                f"{_range([r['torch_kept_system_s_per_step'] for r in kept], '{:.3f}')}."
                if (kept := [r for r in rows if "torch_kept_page_faults_per_step" in r])
                else "."
            )
        )
    return ["", *out] if out else []


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("paths", nargs="+")
    p.add_argument("--write", action="store_true", help="replace the block in BENCHMARKS.md")
    p.add_argument("--block", default="train-step-quiet")
    p.add_argument("--file", default=os.path.join(ROOT, "BENCHMARKS.md"))
    a = p.parse_args(argv)
    paths = [x for pat in a.paths for x in sorted(glob.glob(pat))]
    if not paths:
        print(f"no files match {a.paths}")
        return 2
    try:
        lines = table(paths)
    except ValueError as e:
        print(e)
        return 2
    show_block(lines, a.write, a.file, a.block, TOOL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
