"""What a compiled program costs on its topology, per device: HBM, FLOPs, XLA's time, collectives.

Every figure is the compiler's: ``memory_analysis()`` is XLA's buffer assignment (exact for what the
program allocates, not counting the runtime's own reserve), ``cost_analysis()`` its cost model
(``optimal_seconds`` is an estimate of the step time from FLOPs, bytes and the chip's rates, not a
measurement), and the collectives are read from the optimized HLO. XLA counts a while-loop body once;
its FLOPs and time are scaled here by the HLO's matmul FLOPs with loops counted per iteration over
those counted once (``loop_scale``, tools.aot.hlo_flops), the raw figures kept beside them.
"""

from __future__ import annotations

import re
import time
from typing import Any

from tools.aot.chips import Topology
from tools.aot.hlo_collectives import collective_stats
from tools.aot.hlo_flops import matmul_flops
from tools.aot.programs import Program

GIB = 2.0**30


def memory_report(compiled, hbm_per_device: float) -> dict[str, Any]:
    """Per-device bytes: arguments, outputs, temporaries, aliased (donated) and the total live at
    once (arguments + outputs - aliased + temporaries + code), against the device's HBM."""
    m = compiled.memory_analysis()
    args = float(m.argument_size_in_bytes)
    outs = float(m.output_size_in_bytes)
    alias = float(m.alias_size_in_bytes)
    temp = float(m.temp_size_in_bytes)
    code = float(m.generated_code_size_in_bytes)
    total = args + outs - alias + temp + code
    return {
        "argument_bytes": args,
        "output_bytes": outs,
        "alias_bytes": alias,
        "temp_bytes": temp,
        "code_bytes": code,
        "total_bytes": total,
        "hbm_bytes": hbm_per_device,
        "fits": total <= hbm_per_device,
        "margin_bytes": hbm_per_device - total,
    }


# libtpu refuses to compile a program whose buffers exceed HBM, e.g. "RESOURCE_EXHAUSTED: Ran out of
# memory on HBM, the total memory required for HLO temporaries (1.44T) exceeds available HBM (95.74G)"
_OOM = re.compile(
    r"required for ([\w ]+?) \(([\d.]+)([KMGT]?)\) exceeds available HBM \(([\d.]+)([KMGT]?)\)"
)
_UNIT = {"": 1.0, "K": 2.0**10, "M": 2.0**20, "G": 2.0**30, "T": 2.0**40}


def parse_hbm_oom(message: str) -> dict[str, Any] | None:
    """The figures of libtpu's out-of-HBM compile error: what overflowed, bytes required and
    available (libtpu's units are binary: G = GiB); None for any other error."""
    m = _OOM.search(message)
    if not m:
        return None
    required = float(m.group(2)) * _UNIT[m.group(3)]
    available = float(m.group(4)) * _UNIT[m.group(5)]
    return {"what": m.group(1), "required_bytes": required, "available_bytes": available}


def _not_fitting(program: Program, oom: dict[str, Any], compile_s: float) -> dict[str, Any]:
    """Report of a program the compiler refused for lack of HBM: the margin is negative."""
    return {
        "program": program.name,
        "compile_seconds": round(compile_s, 2),
        "memory": {
            "total_bytes": oom["required_bytes"],
            "hbm_bytes": oom["available_bytes"],
            "fits": False,
            "margin_bytes": oom["available_bytes"] - oom["required_bytes"],
            "overflowing": oom["what"],
            "source": "libtpu's out-of-HBM compile error (its own HBM figure)",
        },
        "model_flops_per_step": program.model_flops,
        "model_flops_per_device": None,
        "xla_flops_per_device": None,
        "xla_bytes_accessed_per_device": None,
        "xla_optimal_seconds": None,
        "tokens_per_step": program.tokens,
        "estimated_tokens_per_second": None,
        "peak_flops_per_device": None,
        "estimated_mfu": None,
        "collectives": {},
    }


def _cost(compiled) -> dict[str, float]:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # older jax: one dict per partition
        cost = cost[0] if cost else {}
    return {k: float(v) for k, v in (cost or {}).items()}


def analyse(program: Program, topology: Topology, num_devices: int) -> dict[str, Any]:
    """Compiles ``program`` and returns its JSON-able report (per-device figures; FLOPs per step).

    mfu = project model FLOPs per device / (XLA's optimal_seconds * the device's bf16 peak).
    """
    t0 = time.perf_counter()
    try:
        compiled = program.lowered.compile()
    except Exception as e:  # noqa: BLE001 - only libtpu's out-of-HBM refusal is a result
        oom = parse_hbm_oom(str(e))
        if oom is None:
            raise
        return _not_fitting(program, oom, time.perf_counter() - t0)
    compile_s = time.perf_counter() - t0
    devices_per_chip = num_devices / topology.num_chips
    hbm = topology.chip.hbm_bytes / devices_per_chip
    peak = topology.chip.peak_bf16_flops / devices_per_chip
    cost = _cost(compiled)
    hlo = compiled.as_text()
    # XLA's cost model counts a while body once; the matmul FLOPs of the HLO counted per loop
    # iteration over counted once scale its FLOPs and time to the whole step (1.0 without loops).
    looped, once = matmul_flops(hlo)
    loop_scale = looped / once if once > 0 else 1.0
    xla_flops = cost.get("flops", 0.0) * loop_scale
    # libtpu answers -1 when its model has no estimate for a program (seen on tiny programs).
    raw_seconds = cost.get("optimal_seconds", 0.0)
    seconds = raw_seconds * loop_scale if raw_seconds > 0 else None
    model_flops_dev = program.model_flops / num_devices
    mfu = model_flops_dev / (seconds * peak) if seconds else None
    return {
        "program": program.name,
        "compile_seconds": round(compile_s, 2),
        "memory": memory_report(compiled, hbm),
        "model_flops_per_step": program.model_flops,
        "model_flops_per_device": model_flops_dev,
        "xla_flops_per_device": xla_flops,
        "xla_flops_per_device_loops_once": cost.get("flops", 0.0),
        "xla_optimal_seconds_loops_once": raw_seconds if raw_seconds > 0 else None,
        "loop_scale": loop_scale,
        "hlo_matmul_flops_per_device": looped,
        "xla_bytes_accessed_per_device": cost.get("bytes accessed", 0.0),
        "xla_optimal_seconds": seconds,
        "tokens_per_step": program.tokens,
        "estimated_tokens_per_second": program.tokens / seconds if seconds else None,
        "peak_flops_per_device": peak,
        "estimated_mfu": mfu,
        "collectives": collective_stats(hlo),
    }
