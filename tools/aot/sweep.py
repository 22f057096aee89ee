"""python -m tools.aot.sweep --recipe NAME --variant "LABEL key=value ..." [--variant ...]
[--programs p,q]

Compiles one recipe under several config overrides (mesh, remat, batch ...), one process each (as
tools.aot.all_recipes does), writes bench_results/aot/sweeps/<recipe>__<topology>__<label>.json and
prints the variants ranked: those whose programs all fit by the estimated MFU of the first program,
then those that do not fit. Example:

  python -m tools.aot.sweep --recipe llava15_7b_stage2 --programs train_step \\
      --variant "mesh1x16x1 mesh.shape=(1,16,1)" --variant "mesh1x8x2 mesh.shape=(1,8,2)" \\
      --variant "remat_dots mesh.shape=(1,16,1) runtime.remat_text=dots"
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from tools.aot.all_recipes import RECIPES
from tools.aot.run import recipe_aot_settings

SWEEPS = os.path.join("bench_results", "aot", "sweeps")


def parse_variant(text: str) -> tuple[str, list[str]]:
    """'LABEL key=value ...' -> (label, ['--config.key=value', ...])."""
    label, *overrides = text.split()
    bad = [o for o in overrides if "=" not in o]
    if bad or not label.replace("_", "").replace("-", "").isalnum():
        raise ValueError(
            f"--variant {text!r}: expected 'LABEL key=value ...' with a plain label "
            f"(letters, digits, '_', '-') and key=value overrides of the config"
        )
    return label, [f"--config.{o}" for o in overrides]


def variant_path(recipe: str, topology: str, label: str) -> str:
    return os.path.join(SWEEPS, f"{recipe}__{topology}__{label}.json")


def rank(reports: dict[str, dict[str, Any]]) -> list[tuple[str, bool, float | None]]:
    """(label, all programs fit, estimated MFU of the first program) best first: fitting variants
    by MFU (unknown MFU last among them), then the ones that do not fit."""
    out = []
    for label, r in reports.items():
        fits = all(e["memory"]["fits"] for e in r["programs"])
        out.append((label, fits, r["programs"][0]["estimated_mfu"]))
    return sorted(out, key=lambda t: (not t[1], -(t[2] or -1.0)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", required=True, help="file stem under configs/recipes/")
    p.add_argument("--variant", action="append", required=True, help="'LABEL key=value ...'")
    p.add_argument("--programs", default="", help="comma list (default: the recipe's)")
    p.add_argument("--topology", default="", help="default: the recipe's AOT['topology']")
    args = p.parse_args(argv)
    config_path = os.path.join(RECIPES, f"{args.recipe}.py")
    if not os.path.exists(config_path):
        raise SystemExit(f"--recipe {args.recipe}: no {config_path}")
    topology = args.topology or recipe_aot_settings(config_path).get("topology", "")
    if not topology:
        raise SystemExit(f"{config_path} has no AOT['topology']; pass --topology")
    variants = [parse_variant(v) for v in args.variant]
    reports, failed = {}, []
    for label, overrides in variants:
        out = variant_path(args.recipe, topology, label)
        cmd = [sys.executable, "-m", "tools.aot", f"--config={config_path}", f"--out={out}"]
        cmd += [f"--topology={topology}", *overrides]
        if args.programs:
            cmd.append(f"--programs={args.programs}")
        print(f"== {args.recipe} {label}: {' '.join(overrides)}", flush=True)
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(label)
            continue
        with open(out) as f:
            reports[label] = json.load(f)
    for label, fits, mfu in rank(reports):
        shown = "n/a" if mfu is None else f"{100 * mfu:.1f}%"
        print(f"  {label}: {'fits' if fits else 'DOES NOT FIT'}, estimated MFU {shown}")
    if failed:
        print(f"failed to compile: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
