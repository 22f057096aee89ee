"""Small matplotlib (Agg) figures for the method runners' reports: weights, matrices."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from jaxlvlm.files import PathLike, run_path, write_bytes_atomic


def _plt():
    # matplotlib is imported only when a report draws (heavy; not needed to train).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: heavy, only when a report draws

    return plt


def save_png(fig, path: PathLike) -> str:
    """Writes a matplotlib figure as a PNG to ``path`` (local or remote, in one atomic write) and
    closes it; returns the file name (for the report's image link)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _plt().close(fig)
    write_bytes_atomic(path, buffer.getvalue(), what="plot")
    return run_path(path).name


def plot_weights(
    weights: dict[str, Sequence[float]], task_names: Sequence[str], path: PathLike
) -> str:
    """Grouped bars: one group per task, one bar per weighting ({name: [T]}). Returns the file name."""
    plt = _plt()
    names = list(weights)
    T = len(task_names)
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * T), 3.5))
    for k, name in enumerate(names):
        ax.bar(np.arange(T) + k * width, np.asarray(weights[name]), width, label=name)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(np.arange(T) + 0.4 - width / 2)
    ax.set_xticklabels(task_names, rotation=30, ha="right")
    ax.set_ylabel("task weight")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def plot_matrix(
    matrix: np.ndarray,
    row_names: Sequence[str],
    col_names: Sequence[str],
    path: PathLike,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    fmt: str = "{:.2f}",
) -> str:
    """Annotated heatmap of a [R, C] matrix (NaN cells left blank). Returns the file name."""
    plt = _plt()
    m = np.asarray(matrix, np.float64)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * m.shape[1], 0.8 + 0.7 * m.shape[0]))
    im = ax.imshow(np.ma.masked_invalid(m), cmap="viridis")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if np.isfinite(m[i, j]):
                ax.text(j, i, fmt.format(m[i, j]), ha="center", va="center", color="w", fontsize=8)
    ax.set_xticks(range(m.shape[1]))
    ax.set_xticklabels(col_names, rotation=30, ha="right")
    ax.set_yticks(range(m.shape[0]))
    ax.set_yticklabels(row_names)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_png(fig, path)


def plot_curves(
    series: dict[str, Sequence[float]],
    x_names: Sequence[str],
    path: PathLike,
    *,
    title: str,
    ylabel: str,
) -> str:
    """One line per series ({name: [X]} over the x positions named ``x_names``; a shorter series
    stops early). Returns the file name."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(x_names)), 3.5))
    for name, ys in series.items():
        ax.plot(np.arange(len(ys)), np.asarray(ys, np.float64), marker="o", label=name)
    ax.set_xticks(np.arange(len(x_names)))
    ax.set_xticklabels(x_names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Lines of a markdown table; floats printed with 2 decimals, None as '-'."""

    def cell(x):
        if x is None:
            return "-"
        if isinstance(x, float | np.floating):
            return "nan" if not np.isfinite(x) else f"{x:.2f}"
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return lines


def task_matrix_lines(
    matrix, tasks, path: PathLike, title: str, axes: tuple[str, str], fmt="{:.2f}"
):
    """Markdown lines embedding a heatmap of a [T, T] matrix over ``tasks`` (rows: axes[0],
    columns: axes[1]), drawn to ``path``."""
    png = plot_matrix(
        matrix, tasks, tasks, path, title=title, xlabel=axes[1], ylabel=axes[0], fmt=fmt
    )
    return [f"![{title}]({png})", ""]
