"""Collectives of an optimized HLO module: how many run per step and how many bytes they move.

Counts are dynamic: an op inside a while body (the scan over layers, gradient accumulation) counts
once per iteration of the loop's known trip count, and an op inside a fused or called computation
counts once per call. Bytes are the op's result buffer per device (for all-gather the gathered
array, for reduce-scatter the scattered shard, for all-reduce the reduced array), summed.
"""

from __future__ import annotations

import re
from collections import defaultdict

KINDS = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")

_DTYPE_BYTES = {
    "pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
    "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16, "f8e4m3fn": 1, "f8e5m2": 1,
}  # fmt: skip
_HEADER = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->\s*.*\{\s*$")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.+?)\s+([a-z][\w\-]*)\(")
_ARRAY = re.compile(r"\b([a-z]+\d*(?:e\dm\d(?:fn)?)?)\[([\d,]*)\]")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_CALLEES = re.compile(
    r"\b(?:calls|to_apply|body|condition|branch_computations)=\{?([^}\s]+(?:,\s*%[\w.\-]+)*)\}?"
)


def _array_bytes(shape_text: str) -> list[int]:
    out = []
    for dtype, dims in _ARRAY.findall(shape_text):
        if dtype not in _DTYPE_BYTES:
            continue
        n = 1
        for d in filter(None, dims.split(",")):
            n *= int(d)
        out.append(n * _DTYPE_BYTES[dtype])
    return out


def _kind(opcode: str) -> str | None:
    base = opcode.removesuffix("-start")
    return base if base in KINDS else None


def _computations(hlo_text: str) -> tuple[dict[str, list[str]], str]:
    comps: dict[str, list[str]] = {}
    entry = ""
    current = None
    for line in hlo_text.splitlines():
        m = _HEADER.match(line)
        if m and not line.startswith(" "):
            current = m.group(1)
            comps[current] = []
            if line.startswith("ENTRY"):
                entry = current
            continue
        if current is not None:
            if line.strip() == "}":
                current = None
            else:
                comps[current].append(line)
    if not entry:
        raise ValueError("no ENTRY computation in the HLO text; pass compiled.as_text()")
    return comps, entry


def _multipliers(comps: dict[str, list[str]], entry: str) -> dict[str, int]:
    """How many times each computation runs per execution of the entry computation."""
    mult: dict[str, int] = defaultdict(int)

    def visit(name: str, times: int, depth: int = 0) -> None:
        if depth > 64 or name not in comps:
            return
        mult[name] += times
        for line in comps[name]:
            trip = _TRIP.search(line)
            for group in _CALLEES.findall(line):
                for callee in re.findall(r"%?([\w.\-]+)", group):
                    is_body = f"body=%{callee}" in line or f"body={callee}" in line
                    visit(
                        callee, times * (int(trip.group(1)) if trip and is_body else 1), depth + 1
                    )

    visit(entry, 1)
    return mult


def collective_stats(hlo_text: str) -> dict[str, dict[str, float]]:
    """{kind: {'count': per-step executions, 'bytes': per-device result bytes per step}} for every
    kind in KINDS (zeros where absent). hlo_text: ``compiled.as_text()`` (the optimized module)."""
    comps, entry = _computations(hlo_text)
    mult = _multipliers(comps, entry)
    stats = {k: {"count": 0, "bytes": 0.0} for k in KINDS}
    for name, lines in comps.items():
        times = mult.get(name, 0)
        if not times:
            continue
        for line in lines:
            m = _INSTR.match(line)
            if not m:
                continue
            kind = _kind(m.group(2))
            if kind is None:
                continue
            sizes = _array_bytes(m.group(1))
            # An async '-start' returns (operands..., result): the result is the last array.
            stats[kind]["count"] += times
            stats[kind]["bytes"] += times * (sizes[-1] if sizes else 0)
    return stats
