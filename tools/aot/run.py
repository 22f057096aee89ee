"""One recipe on one topology: which programs, compile each, the report (JSON-able) and its print."""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

import jax

from tools.aot.analysis import GIB, analyse
from tools.aot.chips import parse_topology
from tools.aot.context import make_context
from tools.aot.method_programs import default_programs, program_builders

MESH_CONTEXT = "set_mesh"  # jaxlvlm.sharding.mesh_context, as the trainer traces
NOTE = (
    "Estimates are XLA's cost model for the compiled program (optimal_seconds), not a measurement; "
    "MFU = the project's model FLOPs per device / (estimated seconds x the chip's bf16 peak)."
)


def recipe_aot_settings(config_path: str) -> dict[str, Any]:
    """The recipe file's module-level ``AOT`` dict ({} when it has none)."""
    spec = importlib.util.spec_from_file_location("_aot_recipe", config_path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import config file {config_path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(getattr(module, "AOT", {}))


def compile_recipe(
    config,
    config_path: str,
    topology: str | None = None,
    programs: list[str] | None = None,
) -> dict[str, Any]:
    """Compiles the recipe's programs for ``topology`` (default: the recipe's AOT['topology']).

    Returns the report: recipe, topology, chip figures, mesh, batch, runtime and one entry per
    program (tools.aot.analysis.analyse). A program that does not fit is reported with its
    negative margin, not raised.
    """
    aot = recipe_aot_settings(config_path)
    name = topology or aot.get("topology")
    if not name:
        raise ValueError(
            f"{config_path} has no AOT['topology']; pass --topology (e.g. v5p-128 or v5e-8)"
        )
    top = parse_topology(name)
    ctx = make_context(config, top, aot.get("model", "lvlm"))
    wanted = programs or list(aot.get("programs", ())) or default_programs(config)
    builders = program_builders()
    unknown = [p for p in wanted if p not in builders]
    if unknown:
        raise ValueError(f"--programs {unknown}: unknown; known programs are {sorted(builders)}")
    entries = [analyse(builders[p](ctx), top, ctx.mesh.size) for p in wanted]
    rt = config.runtime
    return {
        "recipe": os.path.splitext(os.path.basename(config_path))[0],
        "config": config_path,
        "paper_setting": aot.get("paper", ""),
        "topology": name,
        "libtpu_topology": top.libtpu_name,
        "chips": top.num_chips,
        "devices": ctx.mesh.size,
        "chip": {
            "name": top.chip.name,
            "hbm_bytes": top.chip.hbm_bytes,
            "peak_bf16_flops": top.chip.peak_bf16_flops,
            "source": top.chip.source,
        },
        "mesh": dict(ctx.mesh.shape),
        "batch": {"rows": ctx.batch.rows, "length": ctx.batch.length},
        "runtime": {
            "compute_dtype": rt.compute_dtype,
            "scan_layers": rt.scan_layers,
            "remat_vision": rt.remat_vision,
            "remat_text": rt.remat_text,
            "loss_chunk": config.train.loss_chunk,
            "grad_accum": config.train.grad_accum,
        },
        # How the program was traced. Reports written before the trainer moved to jax.set_mesh
        # say 'legacy' (`with mesh:`, activation constraints inactive); see BENCHMARKS.md 6.
        "mesh_context": MESH_CONTEXT,
        "jax_version": jax.__version__,
        "note": NOTE,
        "programs": entries,
    }


def default_out_path(report: dict[str, Any]) -> str:
    """bench_results/aot/<recipe>__<topology>.json"""
    name = f"{report['recipe']}__{report['topology']}.json"
    return os.path.join("bench_results", "aot", name)


def write_report(report: dict[str, Any], path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def _gib(x: float) -> str:
    return f"{x / GIB:.2f}"


def print_report(report: dict[str, Any]) -> None:
    """Human-readable summary, one block per program."""
    print(
        f"{report['recipe']} on {report['topology']} ({report['libtpu_topology']}, "
        f"{report['devices']} devices), mesh {report['mesh']}, batch {report['batch']}"
    )
    for e in report["programs"]:
        m = e["memory"]
        verdict = "fits" if m["fits"] else "DOES NOT FIT"
        if "argument_bytes" not in m:
            print(
                f"  {e['program']}: DOES NOT FIT: {m['overflowing']} need "
                f"{_gib(m['total_bytes'])} GiB of {_gib(m['hbm_bytes'])} GiB per device (short by "
                f"{_gib(-m['margin_bytes'])} GiB; libtpu refused to compile)"
            )
            continue
        print(
            f"  {e['program']}: HBM/device args {_gib(m['argument_bytes'])} + out "
            f"{_gib(m['output_bytes'])} - aliased {_gib(m['alias_bytes'])} + temp "
            f"{_gib(m['temp_bytes'])} = {_gib(m['total_bytes'])} GiB of {_gib(m['hbm_bytes'])} "
            f"GiB: {verdict} (margin {_gib(m['margin_bytes'])} GiB)"
        )
        secs = e["xla_optimal_seconds"]
        mfu = e["estimated_mfu"]
        print(
            f"    FLOPs/device model {e['model_flops_per_device']:.3e}, XLA "
            f"{e['xla_flops_per_device']:.3e}; estimated step "
            f"{'n/a' if secs is None else f'{secs * 1e3:.1f} ms'}, MFU "
            f"{'n/a' if mfu is None else f'{100 * mfu:.1f}%'}; compiled in {e['compile_seconds']} s"
        )
        coll = ", ".join(
            f"{k} {v['count']}x {v['bytes'] / GIB:.2f} GiB"
            for k, v in e["collectives"].items()
            if v["count"]
        )
        print(f"    collectives/step: {coll or 'none'}")
    print(f"  ({report['note']})")
