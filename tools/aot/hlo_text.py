"""Reading an optimized HLO module's text: computations, how often each runs, array sizes.

A computation's multiplier is how many times it runs per execution of the entry computation: a while
body counts its loop's trip count, a fused or called computation once per call site. The trip count
is the op's known_trip_count when the backend writes one, else the bound of the loop condition (the
s32 constant a lax.scan / fori_loop counter from 0 is compared with); 1 when neither is found.
"""

from __future__ import annotations

import re
from collections import defaultdict

DTYPE_BYTES = {
    "pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
    "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16, "f8e4m3fn": 1, "f8e5m2": 1,
}  # fmt: skip
HEADER = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->\s*.*\{\s*$")
INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.+?)\s+([a-z][\w\-]*)\(")
ARRAY = re.compile(r"\b([a-z]+\d*(?:e\dm\d(?:fn)?)?)\[([\d,]*)\]")
TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
CONDITION = re.compile(r"\bcondition=%?([\w.\-]+)")
S32_CONSTANT = re.compile(r"=\s*s32\[\]\S*\s+constant\((\d+)\)")
CALLEES = re.compile(
    r"\b(?:calls|to_apply|body|condition|branch_computations)=\{?([^}\s]+(?:,\s*%[\w.\-]+)*)\}?"
)


def array_bytes(shape_text: str) -> list[int]:
    out = []
    for dtype, dims in ARRAY.findall(shape_text):
        if dtype not in DTYPE_BYTES:
            continue
        n = 1
        for d in filter(None, dims.split(",")):
            n *= int(d)
        out.append(n * DTYPE_BYTES[dtype])
    return out


def computations(hlo_text: str) -> tuple[dict[str, list[str]], str]:
    comps: dict[str, list[str]] = {}
    entry = ""
    current = None
    for line in hlo_text.splitlines():
        m = HEADER.match(line)
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


def _callees(line: str) -> list[str]:
    return [c for group in CALLEES.findall(line) for c in re.findall(r"%?([\w.\-]+)", group)]


def _condition_bound(comps: dict[str, list[str]], name: str, depth: int = 0) -> int | None:
    """The s32 scalar constant of a loop condition (or of a computation it calls)."""
    for line in comps.get(name, ()):
        m = S32_CONSTANT.search(line)
        if m:
            return int(m.group(1))
    if depth < 4:
        for line in comps.get(name, ()):
            for callee in _callees(line):
                bound = _condition_bound(comps, callee, depth + 1)
                if bound is not None:
                    return bound
    return None


def trip_count(comps: dict[str, list[str]], while_line: str) -> int:
    """Iterations of the while op on ``while_line`` (1 when unknown)."""
    m = TRIP.search(while_line)
    if m:
        return int(m.group(1))
    cond = CONDITION.search(while_line)
    bound = _condition_bound(comps, cond.group(1)) if cond else None
    return bound if bound and bound > 0 else 1


def multipliers(comps: dict[str, list[str]], entry: str) -> dict[str, int]:
    """How many times each computation runs per execution of the entry computation."""
    mult: dict[str, int] = defaultdict(int)

    def visit(name: str, times: int, depth: int = 0) -> None:
        if depth > 64 or name not in comps:
            return
        mult[name] += times
        for line in comps[name]:
            callees = _callees(line)
            trips = trip_count(comps, line) if " while(" in line else 1
            for callee in callees:
                is_body = f"body=%{callee}" in line or f"body={callee}" in line
                visit(callee, times * (trips if is_body else 1), depth + 1)

    visit(entry, 1)
    return mult
