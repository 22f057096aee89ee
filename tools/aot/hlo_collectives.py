"""Collectives of an optimized HLO module: how many run per step and how many bytes they move.

Counts are dynamic: an op inside a while body (the scan over layers, gradient accumulation) counts
once per iteration of the loop's known trip count, and an op inside a fused or called computation
counts once per call. Bytes are the op's result buffer per device (for all-gather the gathered
array, for reduce-scatter the scattered shard, for all-reduce the reduced array), summed.
"""

from __future__ import annotations

from tools.aot.hlo_text import INSTR, array_bytes, computations, multipliers

KINDS = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")


def _kind(opcode: str) -> str | None:
    base = opcode.removesuffix("-start")
    return base if base in KINDS else None


def collective_stats(hlo_text: str) -> dict[str, dict[str, float]]:
    """{kind: {'count': per-step executions, 'bytes': per-device result bytes per step}} for every
    kind in KINDS (zeros where absent). hlo_text: ``compiled.as_text()`` (the optimized module)."""
    comps, entry = computations(hlo_text)
    mult = multipliers(comps, entry)
    stats = {k: {"count": 0, "bytes": 0.0} for k in KINDS}
    for name, lines in comps.items():
        times = mult.get(name, 0)
        if not times:
            continue
        for line in lines:
            m = INSTR.match(line)
            if not m:
                continue
            kind = _kind(m.group(2))
            if kind is None:
                continue
            sizes = array_bytes(m.group(1))
            # An async '-start' returns (operands..., result): the result is the last array.
            stats[kind]["count"] += times
            stats[kind]["bytes"] += times * (sizes[-1] if sizes else 0)
    return stats
