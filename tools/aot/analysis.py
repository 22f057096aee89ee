"""What a compiled program costs on its topology, per device: HBM, FLOPs, XLA's time, collectives.

Every figure is the compiler's: ``memory_analysis()`` is XLA's buffer assignment (exact for what the
program allocates, not counting the runtime's own reserve), ``cost_analysis()`` its cost model
(``optimal_seconds`` is an estimate of the step time from FLOPs, bytes and the chip's rates, not a
measurement), and the collectives are read from the optimized HLO.
"""

from __future__ import annotations

import time
from typing import Any

from tools.aot.chips import Topology
from tools.aot.hlo_collectives import collective_stats
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
    compiled = program.lowered.compile()
    compile_s = time.perf_counter() - t0
    devices_per_chip = num_devices / topology.num_chips
    hbm = topology.chip.hbm_bytes / devices_per_chip
    peak = topology.chip.peak_bf16_flops / devices_per_chip
    cost = _cost(compiled)
    xla_flops = cost.get("flops", 0.0)
    # libtpu answers -1 when its model has no estimate for a program (seen on tiny programs).
    seconds = cost.get("optimal_seconds", 0.0)
    seconds = seconds if seconds > 0 else None
    model_flops_dev = program.model_flops / num_devices
    mfu = model_flops_dev / (seconds * peak) if seconds else None
    return {
        "program": program.name,
        "compile_seconds": round(compile_s, 2),
        "memory": memory_report(compiled, hbm),
        "model_flops_per_step": program.model_flops,
        "model_flops_per_device": model_flops_dev,
        "xla_flops_per_device": xla_flops,
        "xla_bytes_accessed_per_device": cost.get("bytes accessed", 0.0),
        "xla_optimal_seconds": seconds,
        "tokens_per_step": program.tokens,
        "estimated_tokens_per_second": program.tokens / seconds if seconds else None,
        "peak_flops_per_device": peak,
        "estimated_mfu": mfu,
        "collectives": collective_stats(compiled.as_text()),
    }
