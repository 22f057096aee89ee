"""Which figures each comparison's README block links (tools/method_bench/figures.py)."""

from __future__ import annotations

import functools

import numpy as np

from jaxlvlm.eval import plots
from tools.method_bench import continual_tables, cotbal_tables, lifelong_tables, pilot_tables
from tools.method_bench.figures import Figure, accuracy_matrices, final_scores, matrix_figure
from tools.method_bench.tables_common import Cells, seeds_label


def _lifelong(cells: Cells) -> list[Figure]:
    stream = [a for a in lifelong_tables.APPROACHES if a != "joint"]
    return final_scores(cells, lifelong_tables.APPROACHES, lifelong_tables.final_row) + (
        accuracy_matrices(cells, stream)
    )


def _continual(cells: Cells) -> list[Figure]:
    approaches = continual_tables.APPROACHES
    return final_scores(cells, approaches, continual_tables.final_row) + accuracy_matrices(
        cells, approaches
    )


def _cotbal(cells: Cells) -> list[Figure]:
    figs = final_scores(
        cells, cotbal_tables.WEIGHTINGS, lambda s: next(iter(s["runs"].values()))["scores"]
    )
    tasks = cells.tasks()
    weights = {
        w: np.mean([s["runs"][w]["last_weights"] for s in cells.summaries(w)], axis=0)
        for w in cells.present(cotbal_tables.WEIGHTINGS)
    }
    if weights:
        draw = functools.partial(plots.plot_weights, weights, tasks)
        figs.append(Figure("weights", "task weights (CoTBal static, others the last step's)", draw))
    Cs = [np.asarray(s["cotbal"]["C"], np.float64) for s in cells.summaries("cotbal")]
    if Cs:
        title = f"CoTBal's contribution matrix C[i, j] ({seeds_label(len(Cs))})"
        figs.append(matrix_figure("contribution", title, np.mean(Cs, axis=0), tasks, tasks,
                                  xlabel="helped task j", ylabel="probe task i"))  # fmt: skip
    return figs


def _pilot(cells: Cells) -> list[Figure]:
    tasks = cells.tasks()
    figs = final_scores(cells, pilot_tables.APPROACHES, lambda s: [s["per_task"][t] for t in tasks])
    series, names = {}, []
    for a in cells.present(pilot_tables.APPROACHES):
        entries = [[r for r in s["rounds"] if "eval" in r] for s in cells.summaries(a)]
        n = min((len(e) for e in entries), default=0)
        if a == "centralized" or n == 0:
            continue
        series[a] = [
            np.mean([np.mean(list(e[i]["eval"].values())) for e in entries]) for i in range(n)
        ]
        if n > len(names):
            names = [pilot_tables.entry_name(r) for r in entries[0][:n]]
    if series:
        draw = functools.partial(plots.plot_curves, series, names, ylabel="mean over clients",
                                 title="round evaluation (mean over seeds)")  # fmt: skip
        figs.append(Figure("rounds", "per-round mean score over clients", draw))
    return figs


FIGURES = {
    "lifelong": _lifelong,
    "cotbal": _cotbal,
    "cotbal_long_probes": _cotbal,
    "pilot_multimodal": _pilot,
    "pilot_mixed": _pilot,
    **{name: _continual for name in continual_tables.RENDERERS},
}
