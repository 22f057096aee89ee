"""python -m tools.aot.all_recipes [--only name,name]

Compiles every recipe of configs/recipes/ that declares AOT settings, one process each (libtpu's
compile memory is returned between recipes), writes bench_results/aot/<recipe>__<topology>.json,
then regenerates the BENCHMARKS.md table from those files (tools.aot.table). A recipe whose
compile fails is named at the end and the exit status is 1; the others are still written.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys

from tools.aot.table import update_benchmarks

RECIPES = "configs/recipes"


def recipe_files() -> list[str]:
    """Recipe files that declare ``AOT = {...}`` at module level."""
    out = []
    for path in sorted(glob.glob(os.path.join(RECIPES, "*.py"))):
        with open(path) as f:
            if "\nAOT = {" in f.read():
                out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help="comma list of recipe names (file stems)")
    args = p.parse_args(argv)
    only = {s for s in args.only.split(",") if s}
    failed = []
    for path in recipe_files():
        name = os.path.splitext(os.path.basename(path))[0]
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        cmd = [sys.executable, "-m", "tools.aot", f"--config={path}"]
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(name)
    update_benchmarks()
    if failed:
        print(f"failed to compile: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
