"""python -m tools.aot --config configs/X.py[:args] [--topology v5p-128] [--config.key=value]

Compiles the recipe's real jitted functions for a TPU slice on this machine (libtpu, no TPU) and
prints and writes, per function: per-device HBM (arguments, outputs, temporaries, total) against the
chip's, whether it fits and by how much, the project's model FLOPs and XLA's, XLA's estimated step
time and the MFU it implies, and the collectives of the optimized HLO. The estimates are the
compiler's cost model, not a measurement.

Flags: --topology (default: the recipe's AOT['topology']), --programs (comma list; default the
recipe's AOT['programs'], else train_step), --out (JSON path; default
bench_results/aot/<recipe>.json; '' = do not write).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

# The config file imports configs.common: the repository root must be importable.
sys.path.insert(0, os.getcwd())

_CONFIG = config_flags.DEFINE_config_file("config", None, "recipe config (file.py[:arg])")
_TOPOLOGY = flags.DEFINE_string("topology", None, "v5p-128 | v5e-8 | v6e-64 | v5p:4x4x4 ...")
_PROGRAMS = flags.DEFINE_string("programs", None, "comma list of programs to compile")
_OUT = flags.DEFINE_string("out", None, "JSON output path ('' = none)")
flags.mark_flags_as_required(["config"])


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from tools.aot.run import compile_recipe, default_out_path, print_report, write_report

    path = config_flags.get_config_filename(flags.FLAGS["config"])
    programs = _PROGRAMS.value.split(",") if _PROGRAMS.value else None
    report = compile_recipe(_CONFIG.value, path, _TOPOLOGY.value, programs)
    print_report(report)
    out = default_out_path(report) if _OUT.value is None else _OUT.value
    if out:
        write_report(report, out)
        print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
