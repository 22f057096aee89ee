"""The method tables' figures: heat maps and curves drawn from the collected summaries.

A figure is named before it is drawn, so a README block can link it without drawing anything (the
README check stays a pure text comparison, and PNG bytes, which differ between matplotlib
versions, are never compared). ``tools/method_tables.py`` draws every figure of the comparisons
present into ``<root>/figures/<comparison>__<name>.png``; ``--check`` verifies they exist.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence

import numpy as np

from jaxlvlm.eval import plots
from tools.method_bench.tables_common import Cells, seeds_label

FIGURES_DIR = "figures"


@dataclasses.dataclass(frozen=True)
class Figure:
    name: str  # file stem, unique within a comparison
    title: str
    draw: Callable[[str], object]  # draws the figure to the given path


def matrix_figure(
    name: str, title: str, matrix, rows: Sequence[str], cols: Sequence[str], *, xlabel: str,
    ylabel: str, fmt: str = "{:.2f}",
) -> Figure:  # fmt: skip
    """An annotated heat map (jaxlvlm.eval.plots.plot_matrix) drawn when asked."""
    draw = functools.partial(
        plots.plot_matrix, np.asarray(matrix, np.float64), list(rows), list(cols),
        title=title, xlabel=xlabel, ylabel=ylabel, fmt=fmt,
    )  # fmt: skip
    return Figure(name, title, draw)


def figure_path(root: str, comparison: str, fig: Figure) -> str:
    return os.path.join(root, FIGURES_DIR, f"{comparison}__{fig.name}.png")


def link_lines(root: str, comparison: str, figures: Sequence[Figure], readme_dir: str) -> list[str]:
    """Markdown image links to the figures, relative to the README's directory."""
    if not figures:
        return []
    out = ["", "Figures (mean over seeds):", ""]
    for fig in figures:
        rel = os.path.relpath(figure_path(root, comparison, fig), readme_dir)
        out.append(f"![{fig.title}]({rel.replace(os.sep, '/')})")
    return out


def accuracy_matrices(cells: Cells, approaches: Sequence[str]) -> list[Figure]:
    """One heat map per approach with a stream accuracy matrix a[t, i] (summary 'matrix'): the
    score on task i after training step t, mean over the approach's seeds."""
    tasks, out = cells.tasks(), []
    for a in cells.present(approaches):
        mats = [np.asarray(s["matrix"], np.float64) for s in cells.summaries(a) if "matrix" in s]
        if not mats:
            continue
        mean = np.mean(mats, axis=0)
        steps = [f"after {i + 1}" for i in range(mean.shape[0])]
        title = f"{a}: accuracy matrix ({seeds_label(len(mats))})"
        out.append(matrix_figure(f"matrix_{a}", title, mean, steps, tasks,
                                 xlabel="evaluated task", ylabel="training step", fmt="{:.0f}"))  # fmt: skip
    return out


def final_scores(cells: Cells, approaches: Sequence[str], final_row) -> list[Figure]:
    """One heat map: approaches x tasks, the final score per task (``final_row`` of a summary)."""
    tasks = cells.tasks()
    present = cells.present(approaches)
    if not present:
        return []
    mean = [np.mean([final_row(s) for s in cells.summaries(a)], axis=0) for a in present]
    title = "final score per task and approach"
    return [matrix_figure("final_scores", title, mean, present, tasks, xlabel="task",
                          ylabel="approach", fmt="{:.0f}")]  # fmt: skip
