"""The lifelong comparison's README tables and plots, from collected cells (collect.py).

Every number is computed here from the committed summaries: per-approach metrics as seed means with
95% t intervals, the claims of docs/benchmark.md with their seed and bootstrap intervals and
verdicts, and the look inside (clusters, the rare task's share, what pruning kept, the base).
"""

from __future__ import annotations

import numpy as np

from jaxlvlm.eval import plots
from tools.method_bench.tables_common import (
    Cells,
    base_table,
    bootstrap_note,
    claim_sentence,
    final_row_table,
    fmt_interval,
    fmt_range,
    fmt_seeds,
    paired_claim,
)

APPROACHES = ("adapt_inf", "scorer", "random", "all", "joint")
RARE = "counting_rare"
DUPLICATES = ("digits", "digits_dup", "digits_noisy")
COLLAPSE_SHARE = 0.85  # docs/benchmark.md: a cluster above this share of the pool is a collapse


def _metric(cells: Cells, approach: str, key: str) -> list[float]:
    out = []
    for s in cells.summaries(approach):
        if approach == "joint":
            out.append({"ACC": s["ACC"], "RG": 100.0}.get(key, float("nan")))
        else:
            out.append(float(s["metrics"].get(key, float("nan"))))
    return out


def _train_steps(s: dict) -> int:
    return (
        int(s["train_steps"]) if "train_steps" in s else sum(st["train_steps"] for st in s["steps"])
    )


def main_table(cells: Cells) -> list[str]:
    rows = []
    for a in cells.present(APPROACHES):
        seeds = cells.seeds(a)
        row = [a, len(seeds)]
        for key in ("ACC", "F", "RG"):
            row.append(fmt_seeds(_metric(cells, a, key)))
        row.append(fmt_range([_train_steps(s) for s in cells.summaries(a)], "{:.0f}"))
        row.append(fmt_range([c["wall_s"] for c in cells.records(a)], "{:.0f}"))
        row.append(
            fmt_range(
                [max(c["load_before"][0], c["load_after"][0]) for c in cells.records(a)], "{:.1f}"
            )
        )
        rows.append(row)
    header = ["approach", "seeds", "ACC", "forgetting F", "relative gain RG", "train steps",
              "wall s", "load"]  # fmt: skip
    return plots.markdown_table(header, rows)


def final_row(s: dict) -> list[float]:
    """A lifelong summary's final score per task [T] (the score matrix's last row)."""
    return s["final"] if "final" in s else s["matrix"][-1]


def claims(cells: Cells) -> tuple[list[str], list[str]]:
    """The claims table and one sentence per claim."""
    specs = [
        ("1", "Adapt-∞ > random (final ACC)", "adapt_inf", "random", "ACC", 0.0),
        ("2", "Adapt-∞ > single scorer (final ACC)", "adapt_inf", "scorer", "ACC", 0.0),
        ("3", "Adapt-∞ RG >= all's RG - 5", "adapt_inf", "all", "RG", 5.0),
    ]
    rows, sentences = [], []
    for num, text, a, b, key, margin in specs:
        va = dict(zip(cells.seeds(a), _metric(cells, a, key), strict=True))
        vb = dict(zip(cells.seeds(b), _metric(cells, b, key), strict=True))
        decided = paired_claim(cells, a, b, va, vb, margin=margin)
        if decided is None:
            continue
        common, diff, boot, word = decided
        rows.append([num, text, fmt_interval(diff), fmt_interval(boot), word])
        sentences.append(claim_sentence(num, text, word, common, bootstrap_note(word, boot)))
    if not rows:
        return ["No claim is decided yet: each needs at least two seeds of both approaches."], []
    header = ["claim", "paper's direction", "difference (+ margin), seeds, 95%",
              "final mean score difference, paired bootstrap 95%", "verdict"]  # fmt: skip
    return plots.markdown_table(header, rows), sentences


def inside_table(cells: Cells) -> list[str]:
    """Per approach: cluster health, the rare task's selected share, duplicates after pruning."""
    tasks = cells.tasks()
    rows = []
    for a in cells.present(APPROACHES):
        if a == "joint":
            continue
        steps = [st for s in cells.summaries(a) for st in s["steps"]]
        clustered = [st for st in steps if "cluster_sizes" in st]
        if clustered:
            shares = [
                max(st["cluster_sizes"]) / max(sum(st["cluster_sizes"]), 1) for st in clustered
            ]
            empty = sum(int(min(st["cluster_sizes"]) == 0) for st in clustered)
            collapsed = sum(int(x > COLLAPSE_SHARE) for x in shares)
            health = f"largest {fmt_range(shares, '{:.0%}')}; empty {empty}; collapsed {collapsed}"
        else:
            health = "no clusters"
        rare = [st["selected_per_task"].get(RARE, 0) / max(st["selected"], 1)
                for st in steps if RARE in st["new"]]  # fmt: skip
        last = [s["steps"][-1]["pool_after_per_task"] for s in cells.summaries(a)
                if "pool_after_per_task" in s["steps"][-1]]  # fmt: skip
        kept = {t: float(np.mean([p[t] for p in last])) for t in tasks} if last else {}
        dup = " / ".join(f"{kept[t]:.0f}" if t in kept else "-" for t in DUPLICATES)
        rows.append(
            [a, health, fmt_range(rare, "{:.1%}"), dup, f"{kept.get(RARE, float('nan')):.0f}"]
        )
    header = ["approach", "clusters over all steps and seeds (largest share, empty, > 85%)",
              f"{RARE} share of the selection when it joins", "final pool: " + " / ".join(DUPLICATES),
              f"final pool: {RARE}"]  # fmt: skip
    return plots.markdown_table(header, rows)


def cluster_table(cells: Cells) -> list[str]:
    """Cluster sizes at every step of every clustered cell (the pool rows per cluster)."""
    rows = []
    for a in cells.present(APPROACHES):
        for seed, s in zip(cells.seeds(a), cells.summaries(a), strict=True):
            for st in s["steps"] if "steps" in s else []:
                if "cluster_sizes" in st:
                    rows.append([a, seed, st["step"], " / ".join(map(str, st["cluster_sizes"])),
                                 " / ".join(st.get("scorer_per_cluster", []))])  # fmt: skip
    if not rows:
        return ["No clustered cell."]
    return plots.markdown_table(
        ["approach", "seed", "step", "cluster sizes", "scorer per cluster"], rows
    )


def render(cells: Cells) -> list[str]:
    """The README block of the lifelong comparison."""
    claim_rows, sentences = claims(cells)
    out = ["Metrics per approach (mean over seeds, 95% t interval; train steps, wall time and load "
           "as median [min-max] over seeds):", ""]  # fmt: skip
    out += main_table(cells) + [
        "",
        "Final scores per task (0-100, mean over seeds, 95% t interval):",
        "",
    ]
    out += final_row_table(cells, APPROACHES, final_row) + [
        "",
        "The claims of docs/benchmark.md:",
        "",
    ]
    out += claim_rows + [""] + (sentences + [""] if sentences else []) + ["Inside the runs:", ""]
    out += inside_table(cells) + [
        "",
        "Cluster sizes (pool rows) and the scorer chosen per cluster:",
        "",
    ]
    out += cluster_table(cells) + ["", "The base model every approach starts from (per seed):", ""]
    out += base_table(cells, APPROACHES)
    return out
