"""The README's claims at a glance: every comparison's claims and verdicts in one table.

The rows come from each comparison's own ``claims`` function (the same table its README block
shows), so the summary cannot disagree with the blocks: per claim, the method, the scenario, the
paper's direction, the seed interval of the difference and the verdict of docs/benchmark.md's rule.
A comparison without a decided claim shows its reason instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from jaxlvlm.eval import plots
from tools.method_bench import continual_tables, cotbal_tables, lifelong_tables, pilot_tables
from tools.method_bench.tables_common import Cells

ClaimsFn = Callable[[Cells], tuple[list[str], list[str]]]

# (README block, method, scenario, claims function), in the README's order.
COMPARISONS: tuple[tuple[str, str, str, ClaimsFn], ...] = (
    ("cotbal", "CoTBal", "five tasks with known transfer", cotbal_tables.claims),
    ("cotbal_long_probes", "CoTBal", "the same, probes up to the whole run", cotbal_tables.claims),
    ("continual_domain", "Continual LLaVA", "domain stream", continual_tables.claims),
    ("continual_domain_order1", "Continual LLaVA", "domain stream, reversed order",
     continual_tables.claims),
    ("continual_capability", "Continual LLaVA", "capability stream", continual_tables.claims),
    ("continual_dataset", "Continual LLaVA", "dataset stream", continual_tables.claims),
    ("lifelong", "Adapt-∞", "lifelong stream", lifelong_tables.claims),
    ("pilot_multimodal", "Pilot", "all multimodal", pilot_tables.claims),
    ("pilot_mixed", "Pilot", "mixed (one text-only task)", pilot_tables.claims),
)  # fmt: skip


def table_rows(lines: list[str]) -> list[list[str]]:
    """The body rows of a table made by ``plots.markdown_table`` (its header and rule dropped):
    the cells as strings, stripped. [] when ``lines`` is not such a table (a message instead)."""
    if len(lines) < 2 or not lines[0].startswith("| ") or not lines[1].startswith("|---"):
        return []
    width = lines[1].count("|") - 1
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip()[1:-1].split(" | ")]
        if len(cells) != width:
            raise ValueError(f"a claims row has {len(cells)} cells, its header {width}: {line!r}")
        rows.append(cells)
    return rows


def render(root: str) -> list[str]:
    """The summary block over the comparisons collected under ``root``."""
    rows = []
    for name, method, scenario, claims in COMPARISONS:
        if not os.path.isdir(os.path.join(root, name)):
            continue
        lines, _ = claims(Cells(root, name))
        decided = table_rows(lines)
        if not decided:
            rows.append([method, scenario, lines[0], "-", "-", "no claim decided"])
        for num, text, seeds_diff, bootstrap, word in decided:
            rows.append([method, scenario, f"{num}. {text}", seeds_diff, bootstrap, f"**{word}**"])
    if not rows:
        return ["No comparison is collected yet."]
    header = ["method", "scenario", "claim (the paper's direction)",
              "difference (paper's direction positive, margin included), seeds, 95%",
              "per-sample difference, paired bootstrap 95%", "verdict"]  # fmt: skip
    return [
        "Every claim of docs/benchmark.md, with the verdict its pre-stated rule gives on the "
        "committed cells (each comparison's block below has the tables, intervals and readings):",
        "",
        *plots.markdown_table(header, rows),
    ]
