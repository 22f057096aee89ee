"""The continual comparisons' README tables, from collected cells (collect.py).

One block per stream (continual_domain, continual_domain_order1, continual_capability,
continual_dataset). Every number is computed here from the committed summaries: per-approach
metrics as seed means with 95% t intervals, the claims of docs/benchmark.md (Continual LLaVA) with
their seed and bootstrap intervals and verdicts, the accuracy matrix per approach (mean over
seeds), forgetting per task, the pool entries each task of a Continual LLaVA cell selected and how
much the tasks' selections overlap, the base model's validation scores, and each cell's wall time
and load.

Summaries (jaxlvlm.runners.continual): a stream cell holds 'tasks' [T], 'matrix' [T][T] (row t:
scores 0-100 on every task after training task t), 'base' [T], 'metrics' {ACC, MAA, F, BWT, FWT,
PL} and, for continual_llava, 'pool_selection' (the method's own per-task selections); the joint
cell holds 'final' [T] and 'ACC'.
"""

from __future__ import annotations

import itertools

import numpy as np

from jaxlvlm.eval import plots
from tools.method_bench.gate import cell_gate, verdict
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
    seeds_label,
)

COMPARISONS = (
    "continual_domain",
    "continual_domain_order1",
    "continual_capability",
    "continual_dataset",
)
APPROACHES = ("continual_llava", "seq_lora", "seq_ft", "replay", "joint")
METHOD = "continual_llava"
ACC_MARGIN = 5.0  # docs/benchmark.md claim 3: the method's ACC at least seq-LoRA's minus 5 points


def _metric(summary: dict, key: str) -> float:
    """ACC/F/BWT/FWT of a cell; the joint cell has only ACC (its final row), NaN otherwise."""
    if "metrics" in summary:
        return float(summary["metrics"].get(key, float("nan")))
    return float(summary["ACC"]) if key == "ACC" else float("nan")


def _metrics(cells: Cells, approach: str, key: str) -> list[float]:
    return [_metric(s, key) for s in cells.summaries(approach)]


def final_row(s: dict) -> list[float]:
    """A stream summary's final score per task [T] (the accuracy matrix's last row)."""
    return s["final"] if "final" in s else s["matrix"][-1]


def _forgetting_per_task(matrix: list[list[float]]) -> np.ndarray:
    """[T-1]: per task i < T-1, its best score after training tasks i..T-2 minus the final one (the
    terms whose mean is F, jaxlvlm.eval.continual_metrics.forgetting)."""
    a = np.asarray(matrix, np.float64)
    T = a.shape[0]
    return np.asarray([a[i : T - 1, i].max() - a[T - 1, i] for i in range(T - 1)])


def main_table(cells: Cells) -> list[str]:
    rows = []
    for a in cells.present(APPROACHES):
        row = [a, len(cells.seeds(a))]
        row += [fmt_seeds(_metrics(cells, a, k)) for k in ("ACC", "F", "BWT", "FWT")]
        recs = cells.records(a)
        row.append(fmt_range([c["wall_s"] for c in recs], "{:.0f}"))
        row.append(
            fmt_range([max(c["load_before"][0], c["load_after"][0]) for c in recs], "{:.1f}")
        )
        rows.append(row)
    header = ["approach", "seeds", "final ACC", "forgetting F", "BWT", "FWT", "wall s", "load"]
    return plots.markdown_table(header, rows)


CLAIMS = (
    # (number, text, the method, the baseline, metric, sign, margin): the difference tested is
    # sign * (method - baseline) + margin, positive in the paper's direction.
    ("1", "Continual LLaVA forgets less than seq-LoRA (F lower)", METHOD, "seq_lora", "F", -1, 0.0),
    ("2", "Continual LLaVA forgets less than seq-FT (F lower)", METHOD, "seq_ft", "F", -1, 0.0),
    ("3", f"Continual LLaVA final ACC >= seq-LoRA's - {ACC_MARGIN:g}", METHOD, "seq_lora", "ACC",
     1, ACC_MARGIN),
)  # fmt: skip


def claims(cells: Cells) -> tuple[list[str], list[str]]:
    """The claims table and one sentence per claim decided (at least two common seeds)."""
    rows, sentences = [], []
    for num, text, a, b, key, sign, margin in CLAIMS:
        va = dict(zip(cells.seeds(a), _metrics(cells, a, key), strict=True))
        vb = dict(zip(cells.seeds(b), _metrics(cells, b, key), strict=True))
        # docs/benchmark.md: the bootstrap is of the final evaluation's mean score (method minus
        # baseline), for every claim; for claims on F it is reported beside, not the same quantity.
        decided = paired_claim(cells, a, b, va, vb, sign=sign, margin=margin)
        if decided is None:
            continue
        common, diff, boot, word = decided
        rows.append([num, text, fmt_interval(diff), fmt_interval(boot), word])
        # Only for the ACC claim do the two intervals measure the same quantity (the final mean
        # score difference, here with the claim's margin added).
        note = bootstrap_note(word, boot, shift=margin) if key == "ACC" else ""
        sentences.append(claim_sentence(num, text, word, common, note))
    if not rows:
        return ["No claim is decided yet: each needs at least two seeds of both approaches."], []
    header = ["claim", "paper's direction", "difference (paper's direction positive, + margin), "
              "seeds, 95%", "final mean score difference (method - baseline), paired bootstrap "
              "95%", "verdict"]  # fmt: skip
    return plots.markdown_table(header, rows), sentences


def matrix_tables(cells: Cells) -> list[str]:
    """Per stream approach: the accuracy matrix a[t, i] (mean over seeds), with the base's row."""
    tasks = cells.tasks()
    out = []
    for a in cells.present(APPROACHES):
        sums = [s for s in cells.summaries(a) if "matrix" in s]
        if not sums:
            continue
        mean = np.mean([s["matrix"] for s in sums], axis=0)
        rows = []
        bases = [s["base"] for s in sums if s.get("base") is not None]
        if bases:
            rows.append(["(base)", *[f"{v:.1f}" for v in np.mean(bases, axis=0)]])
        rows += [[t, *[f"{v:.1f}" for v in mean[i]]] for i, t in enumerate(tasks)]
        out += [f"{a} ({seeds_label(len(sums))}):", ""]
        out += plots.markdown_table(["after \\ on", *tasks], rows) + [""]
    return out[:-1] if out else ["No stream cell."]


def forgetting_table(cells: Cells) -> list[str]:
    """Forgetting of each task but the last (best earlier score minus final), per approach."""
    tasks = cells.tasks()
    rows = []
    for a in cells.present(APPROACHES):
        per = np.asarray([_forgetting_per_task(s["matrix"]) for s in cells.summaries(a)
                          if "matrix" in s])  # fmt: skip
        if per.size:
            rows.append([a, *[fmt_seeds(per[:, i]) for i in range(len(tasks) - 1)]])
    return plots.markdown_table(["approach", *tasks[:-1]], rows)


def selection_overlap(sel: dict) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise overlap of the tasks' selections: ([T, T] shared top-M entries / M, [T, T] shared
    coefficient mass sum_n min(alpha_i[n], alpha_j[n])), both 1 on the diagonal when K = N."""
    top = [set(t) for t in sel["top_entries"]]
    alpha = np.asarray(sel["mean_coefficient"], np.float64)
    T, m = len(top), int(sel["top_m"])
    shared = np.asarray([[len(top[i] & top[j]) / m for j in range(T)] for i in range(T)])
    mass = np.minimum(alpha[:, None, :], alpha[None, :, :]).sum(-1)
    return shared, mass


def selection_tables(cells: Cells) -> list[str]:
    """Per Continual LLaVA cell: each task's top entries, and the mean overlap over task pairs."""
    tasks = cells.tasks()
    rows, mass_mats = [], []
    for seed, s in zip(cells.seeds(METHOD), cells.summaries(METHOD), strict=True):
        sel = s.get("pool_selection")
        if sel is None:
            rows.append([seed, "not recorded", "-", "-"])
            continue
        shared, mass = selection_overlap(sel)
        pairs = list(itertools.combinations(range(len(tasks)), 2))
        tops = "; ".join(f"{t}: {' '.join(map(str, e))}" for t, e in
                         zip(s["tasks"], sel["top_entries"], strict=True))  # fmt: skip
        rows.append([seed, tops, f"{np.mean([shared[i, j] for i, j in pairs]):.2f}",
                     f"{np.mean([mass[i, j] for i, j in pairs]):.2f}"])  # fmt: skip
        mass_mats.append(mass)
    if not rows:
        return ["No Continual LLaVA cell."]
    header = ["seed", "top entries per task (largest mean coefficient first)",
              "shared top-M entries, mean over task pairs (0-1)",
              "shared coefficient mass, mean over task pairs (0-1)"]  # fmt: skip
    out = plots.markdown_table(header, rows)
    if mass_mats:
        mean = np.mean(mass_mats, axis=0)
        out += ["", f"Shared coefficient mass between tasks (mean over {len(mass_mats)} seeds; "
                "1 = the same entries with the same weights, 0 = disjoint selections):", ""]  # fmt: skip
        out += plots.markdown_table(
            ["", *tasks], [[t, *[f"{v:.2f}" for v in mean[i]]] for i, t in enumerate(tasks)]
        )
    return out


def gate_table(cells: Cells) -> list[str]:
    """The learnability gate (docs/benchmark.md) on every seq_ft cell: each task's score right
    after its own training against its threshold (twice the chance level computed from its test
    samples, tools/method_bench/gate.py, or 20 for free-form answers). The gate is read on seed 0;
    the other seeds show whether it holds."""
    if "seq_ft" not in cells.present(APPROACHES):
        return ["No seq_ft cell."]
    tasks = cells.tasks()
    first = cells.records("seq_ft")[0]
    gate = cell_gate(first["command"], tasks)
    rows = [["threshold", *[f"{g['threshold']:.1f}" for g in gate]]]
    for seed, s in zip(cells.seeds("seq_ft"), cells.summaries("seq_ft"), strict=True):
        own = [s["matrix"][i][i] for i in range(len(tasks))]
        rows.append([f"seq_ft seed {seed}", *[
            f"{x:.1f} ({verdict(x, g)})"
            for x, g in zip(own, gate, strict=True)]])  # fmt: skip
    return plots.markdown_table(["", *tasks], rows)


def cell_table(cells: Cells) -> list[str]:
    """Every cell's wall time, the load average (1 min) before and after, and where its base came
    from (trained in the cell, or copied from another cell of the seed)."""
    rows = []
    for a in cells.present(APPROACHES):
        for seed, c in zip(cells.seeds(a), cells.records(a), strict=True):
            source = c.get("copied_from") or ("copied" if c.get("copied_from_seed") else "trained")
            rows.append([a, seed, f"{c['wall_s']:.0f}", f"{c['load_before'][0]:.1f}",
                         f"{c['load_after'][0]:.1f}", source])  # fmt: skip
    header = ["approach", "seed", "wall s", "load before", "load after", "base"]
    return plots.markdown_table(header, rows)


def render(cells: Cells) -> list[str]:
    """The README block of one continual comparison."""
    claim_rows, sentences = claims(cells)
    out = [f"Stream: {' -> '.join(cells.tasks())}.", "",
           "Metrics per approach (scores 0-100; mean over seeds, 95% t interval; wall time and load "
           "as median [min-max] over seeds):", ""]  # fmt: skip
    out += main_table(cells)
    out += ["", "Final scores per task (0-100, mean over seeds, 95% t interval):", ""]
    out += final_row_table(cells, APPROACHES, final_row) + [
        "",
        "The claims of docs/benchmark.md:",
        "",
    ]
    out += claim_rows + [""] + (sentences + [""] if sentences else [])
    out += ["Accuracy matrix a[t, i] (row: after training task t; column: task i; mean over "
            "seeds):", ""]  # fmt: skip
    out += matrix_tables(cells)
    out += ["", "Forgetting per task (best score after its own training minus the final one; "
            "mean over seeds, 95% t interval):", ""]  # fmt: skip
    out += forgetting_table(cells)
    out += ["", "Inside Continual LLaVA: the pool entries each task selected (its training "
            "instances' mean selection coefficients) and how much the tasks' selections overlap:",
            ""]  # fmt: skip
    out += selection_tables(cells)
    out += ["", "The learnability gate: each task's score right after its own training (seq_ft) "
            "against twice its chance level, or 20 for free-form answers:", ""]  # fmt: skip
    out += gate_table(cells)
    out += ["", "The base model every approach starts from (per seed):", ""]
    out += base_table(cells, APPROACHES, "No base record.")
    out += ["", "Cells (wall time, load average before and after, the base's origin):", ""]
    out += cell_table(cells)
    return out


RENDERERS = {c: render for c in COMPARISONS}  # tools/method_tables.py: one README block per stream
