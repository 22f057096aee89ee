"""Matmul FLOPs of an optimized HLO module, loops counted per iteration.

XLA's ``cost_analysis()`` counts a while body once: for a model whose layers are scanned its FLOPs
and ``optimal_seconds`` cover one layer per stack. The matmuls (``dot`` and ``convolution``, which
TPU HLO uses for most dots) are counted here from their shapes, once plain and once with each
computation's multiplier (tools.aot.hlo_text); the ratio scales XLA's estimate to the whole step.
"""

from __future__ import annotations

import math
import re

from tools.aot.hlo_text import ARRAY, computations, multipliers

_DEF = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+?)\s+([a-z][\w\-]*)\((.*)$")
_LABELS = re.compile(r"dim_labels=(\w+)_(\w+)->(\w+)")
_WINDOW = re.compile(r"window=\{size=([\dx]+)")
_CONTRACT = re.compile(r"lhs_contracting_dims=\{([\d,]*)\}")
_GROUPS = re.compile(r"feature_group_count=(\d+)")


def _dims(shape: str) -> list[int] | None:
    m = ARRAY.search(shape)
    if not m:
        return None
    return [int(d) for d in m.group(2).split(",") if d]


def _operands(rest: str) -> list[str]:
    return re.findall(r"%([\w.\-]+)", rest.split(")", 1)[0])


def _matmul_flops(opcode: str, out: list[int], rest: str, shapes: dict[str, list[int]]) -> float:
    ops = _operands(rest)
    if opcode == "dot":
        lhs = shapes.get(ops[0]) if ops else None
        m = _CONTRACT.search(rest)
        if lhs is None or m is None:
            return 0.0
        k = math.prod(lhs[int(i)] for i in m.group(1).split(",") if i)
        return 2.0 * math.prod(out) * k
    rhs = shapes.get(ops[1]) if len(ops) > 1 else None
    labels = _LABELS.search(rest)
    if rhs is None or labels is None:
        return 0.0
    k = rhs[labels.group(2).index("i")]
    window = _WINDOW.search(rest)
    if window:
        k *= math.prod(int(w) for w in window.group(1).split("x"))
    groups = _GROUPS.search(rest)
    return 2.0 * math.prod(out) * k / (int(groups.group(1)) if groups else 1)


def matmul_flops(hlo_text: str) -> tuple[float, float]:
    """(FLOPs with loops counted per iteration, FLOPs with every op once) of the dots and
    convolutions of ``compiled.as_text()``, per device."""
    comps, entry = computations(hlo_text)
    mult = multipliers(comps, entry)
    shapes: dict[str, list[int]] = {}
    found: list[tuple[str, str, list[int], str]] = []
    for name, lines in comps.items():
        for line in lines:
            m = _DEF.match(line)
            if not m:
                continue
            dims = _dims(m.group(2))
            if dims is not None:
                shapes[m.group(1)] = dims
            if m.group(3) in ("dot", "convolution") and dims is not None:
                found.append((name, m.group(3), dims, m.group(4)))
    weighted = once = 0.0
    for comp, opcode, out, rest in found:
        f = _matmul_flops(opcode, out, rest, shapes)
        once += f
        weighted += f * mult.get(comp, 0)
    return weighted, once
