"""Reading a collected comparison (collect.py) and formatting intervals for the README tables."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from jaxlvlm.eval import plots
from jaxlvlm.eval.intervals import Interval, paired_bootstrap, seed_interval, verdict


def _read(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


class Cells:
    """The collected cells of one comparison: <root>/<comparison>/<cell>/seed<k>/."""

    def __init__(self, root: str, comparison: str):
        self.dir = os.path.join(root, comparison)
        if not os.path.isdir(self.dir):
            raise FileNotFoundError(f"{self.dir}: no collected cells of {comparison!r}")
        self._ids = _read(os.path.join(self.dir, "test_ids.json"))["ids"]

    def seeds(self, approach: str) -> list[int]:
        d = os.path.join(self.dir, approach)
        if not os.path.isdir(d):
            return []
        found = [re.fullmatch(r"seed(\d+)", n) for n in os.listdir(d)]
        return sorted(int(m.group(1)) for m in found if m)

    def present(self, approaches: Iterable[str]) -> list[str]:
        return [a for a in approaches if self.seeds(a)]

    def _files(self, approach: str, name: str) -> list[dict]:
        return [
            _read(os.path.join(self.dir, approach, f"seed{k}", name)) for k in self.seeds(approach)
        ]

    def summaries(self, approach: str) -> list[dict]:
        return self._files(approach, "summary.json")

    def records(self, approach: str) -> list[dict]:
        return self._files(approach, "cell.json")

    def base_records(self, approach: str) -> list[tuple[int, dict]]:
        out = []
        for k in self.seeds(approach):
            path = os.path.join(self.dir, approach, f"seed{k}", "base_phase.json")
            if os.path.exists(path):
                out.append((k, _read(path)))
        return out

    def final_scores(self, approach: str, seed: int) -> np.ndarray:
        """[N] per-sample scores of the final evaluation, in test_ids.json's order."""
        scores = _read(os.path.join(self.dir, approach, f"seed{seed}", "final_scores.json"))[
            "scores"
        ]
        if len(scores) != len(self._ids):
            raise ValueError(
                f"{approach} seed {seed}: {len(scores)} scores for {len(self._ids)} ids"
            )
        return np.asarray(scores, np.float64)

    def tasks(self) -> list[str]:
        for a in sorted(os.listdir(self.dir)):
            if self.seeds(a):
                return list(self.summaries(a)[0]["tasks"])
        raise FileNotFoundError(f"{self.dir}: no cell has a summary")


def pooled_scores(cells: Cells, approach: str, seeds: Sequence[int]) -> np.ndarray:
    """The per-sample final scores of ``seeds`` concatenated in seed order ([len(seeds) * N])."""
    return np.concatenate([cells.final_scores(approach, k) for k in seeds])


def fmt_interval(iv: Interval, digits: int = 1) -> str:
    """'12.3 ± 4.5' (mean ± half width); '12.3 [10.0, 14.6]' when the interval is not symmetric."""
    m, lo, hi = iv.mean, iv.low, iv.high
    if abs((hi - m) - (m - lo)) <= 10 ** (-digits - 1):
        return f"{m:.{digits}f} ± {iv.half_width:.{digits}f}"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def seeds_label(n: int) -> str:
    """'1 seed' / 'n seeds'."""
    return f"{n} seed" if n == 1 else f"{n} seeds"


def fmt_seeds(values: Sequence[float], digits: int = 1) -> str:
    """A metric over seeds: 'mean ± half width' (95% t) from two seeds on; one seed: 'x (1 seed)'."""
    v = [float(x) for x in values]
    if any(np.isnan(v)) or not v:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.{digits}f} (1 seed)"
    return fmt_interval(seed_interval(v), digits)


def fmt_range(values: Sequence[float], fmt: str) -> str:
    """'median [min-max]' of values in ``fmt`` (one value: just it; none: '-')."""
    if not len(values):
        return "-"
    v = np.asarray(values, np.float64)
    med = fmt.format(float(np.median(v)))
    if len(v) == 1 or v.min() == v.max():
        return med
    return f"{med} [{fmt.format(float(v.min()))}-{fmt.format(float(v.max()))}]"


def paired_claim(
    cells: Cells, a: str, b: str, va: dict, vb: dict, sign: int = 1, margin: float = 0.0
) -> tuple[list[int], Interval, Interval, str] | None:
    """A claim 'a beats b' decided over the seeds both have (at least two; else None).

    va, vb: seed -> the claim's metric. The seed interval is of sign x (a - b) + margin, the
    verdict is read from it; the paired bootstrap is of the final evaluation's mean score (a - b,
    per test sample, pooled over the common seeds), reported beside it.
    Returns (common seeds, seed interval, bootstrap interval, verdict)."""
    common = sorted(set(va) & set(vb))
    if len(common) < 2:
        return None
    diff = seed_interval([sign * (va[k] - vb[k]) + margin for k in common])
    boot = paired_bootstrap(*(100.0 * pooled_scores(cells, x, common) for x in (a, b)))
    return common, diff, boot, verdict(diff)


def bootstrap_note(word: str, boot: Interval | None, shift: float = 0.0) -> str:
    """The sentence added when the seeds do not separate a claim but the bootstrap (shifted by the
    claim's margin) excludes zero: the test-sample noise is small, the seed spread is not."""
    if boot is None or word != "not separated":
        return ""
    low, high = boot.low + shift, boot.high + shift
    if low <= 0 <= high:
        return ""
    side = "in the paper's direction" if low > 0 else "against the paper's direction"
    margin = " (with the margin)" if shift else ""
    return (f" The paired bootstrap over test samples{margin} excludes zero ({side}): the "
            "test-sample noise is small, the seed-to-seed spread is not.")  # fmt: skip


def claim_sentence(num: str, text: str, word: str, seeds: Sequence[int], note: str = "") -> str:
    return f"- Claim {num} ({text}): **{word}** over seeds {list(seeds)}.{note}"


def base_table(
    cells: Cells, approaches: Iterable[str], empty: str = "No base record."
) -> list[str]:
    """The base every approach of a seed starts from: steps, cap, validation scores per seed
    (read from the first approach that has base records: they all share it)."""
    rows = []
    for a in cells.present(approaches):
        for seed, rec in cells.base_records(a):
            scores = rec.get("scores") or {}
            rows.append([seed, rec["steps"], rec.get("max_steps", rec["steps"]),
                         " / ".join(f"{k} {100 * v:.1f}" for k, v in sorted(scores.items()))])  # fmt: skip
        if rows:
            break
    if not rows:
        return [empty]
    return plots.markdown_table(["seed", "base steps", "cap", "validation scores (0-100)"], rows)


def final_row_table(
    cells: Cells, approaches: Iterable[str], final_row: Callable[[dict], Sequence[float]]
) -> list[str]:
    """Per approach: every task's final score (``final_row`` of a summary), mean over seeds with
    its 95% t interval."""
    tasks = cells.tasks()
    rows = []
    for a in cells.present(approaches):
        finals = np.asarray([final_row(s) for s in cells.summaries(a)])
        rows.append([a, *[fmt_seeds(finals[:, i]) for i in range(len(tasks))]])
    return plots.markdown_table(["approach", *tasks], rows)
