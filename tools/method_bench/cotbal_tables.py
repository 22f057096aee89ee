"""The CoTBal comparison's README tables, from collected cells (collect.py).

Cells: one per weighting (ew, tla, dwa, rlw, cotbal: each a final run from the seed's base) and
'stl' (the single-task references at equal total steps and at equal per-task exposure). dI / dE
of a weighting are computed here against the same seed's references (docs/methods.md section 5.1).
The look inside: whether every probe learned its task (the check of docs/benchmark.md), how long
the probes trained, CoTBal's weights and the contribution asymmetries the scenario builds in.
"""

from __future__ import annotations

import numpy as np

from jaxlvlm.eval import plots
from jaxlvlm.eval.continual_metrics import delta_I_E
from jaxlvlm.eval.intervals import seed_interval, verdict
from tools.method_bench.tables_common import (
    Cells,
    bootstrap_note,
    claim_sentence,
    fmt_interval,
    fmt_range,
    fmt_seeds,
    paired_claim,
)

WEIGHTINGS = ("cotbal", "ew", "tla", "dwa", "rlw")
REFERENCES = (("stl", "single task, equal total steps"),
              ("stl_exposure", "single task, equal per-task exposure"))  # fmt: skip
# (helper, helped): the asymmetries the scenario builds in (a sub-skill; clean vs noisy).
ASYMMETRIES = (("digits", "digit_pair"), ("counting", "counting_noisy"))


def _scores(cells: Cells, w: str) -> dict[int, np.ndarray]:
    """seed -> [T] final scores of weighting ``w``."""
    return {
        k: np.asarray(s["runs"][w]["scores"], np.float64)
        for k, s in zip(cells.seeds(w), cells.summaries(w), strict=True)
    }


def _references(cells: Cells, key: str) -> dict[int, np.ndarray]:
    """seed -> [T] single-task reference scores (``key``: 'stl' or 'stl_exposure')."""
    return {
        k: np.asarray(s[key], np.float64)
        for k, s in zip(cells.seeds("stl"), cells.summaries("stl"), strict=True)
        if key in s
    }


def _deltas_by_seed(cells: Cells, w: str, key: str) -> tuple[dict[int, float], dict[int, float]]:
    """seed -> dI and seed -> dE (percent) of ``w`` for the seeds that have the references."""
    refs, dI, dE = _references(cells, key), {}, {}
    for k, a in _scores(cells, w).items():
        if k in refs:
            d = delta_I_E(a, refs[k])
            dI[k], dE[k] = float(d["delta_I"]), float(d["delta_E"])
    return dI, dE


def _cell_cost(cells: Cells, a: str) -> list[str]:
    recs = cells.records(a)
    load = [max(c["load_before"][0], c["load_after"][0]) for c in recs]
    return [fmt_range([c["wall_s"] for c in recs], "{:.0f}"), fmt_range(load, "{:.1f}")]


def score_table(cells: Cells) -> list[str]:
    """Per weighting and reference: the mean over tasks and each task's score."""
    tasks, rows = cells.tasks(), []
    for w in cells.present(WEIGHTINGS):
        per_seed = np.asarray(list(_scores(cells, w).values()))
        rows.append([w, len(per_seed), fmt_seeds(per_seed.mean(axis=1)),
                     *[fmt_seeds(per_seed[:, i]) for i in range(len(tasks))]])  # fmt: skip
    for key, label in REFERENCES:
        refs = np.asarray(list(_references(cells, key).values()))
        if len(refs):
            rows.append([label, len(refs), fmt_seeds(refs.mean(axis=1)),
                         *[fmt_seeds(refs[:, i]) for i in range(len(tasks))]])  # fmt: skip
    return plots.markdown_table(["run", "seeds", "mean over tasks", *tasks], rows)


def delta_table(cells: Cells) -> list[str]:
    """dI / dE per weighting against both references, with the cell's cost."""
    rows = []
    for w in cells.present(WEIGHTINGS):
        row = [w]
        for key, _ in REFERENCES:
            dI, dE = _deltas_by_seed(cells, w, key)
            row += [fmt_seeds(list(dI.values())), fmt_seeds(list(dE.values()))]
        rows.append(row + _cell_cost(cells, w))
    header = ["weighting", "dI % (equal steps)", "dE % (equal steps)", "dI % (equal exposure)",
              "dE % (equal exposure)", "wall s", "load"]  # fmt: skip
    return plots.markdown_table(header, rows)


def _contribution(cells: Cells, helper: str, helped: str) -> dict[int, float]:
    """seed -> C[helper, helped] - C[helped, helper] from the CoTBal cell's probes."""
    tasks, out = cells.tasks(), {}
    i, j = tasks.index(helper), tasks.index(helped)
    for k, s in zip(cells.seeds("cotbal"), cells.summaries("cotbal"), strict=True):
        C = np.asarray(s["cotbal"]["C"], np.float64)
        out[k] = float(C[i, j] - C[j, i])
    return out


def probes_passed(cells: Cells) -> tuple[list[int], list[int]]:
    """(seeds whose every probe passed the learn check, seeds where one did not) of the CoTBal
    cell: docs/benchmark.md tests the claims only where every probe passed."""
    passed, failed = [], []
    for k, s in zip(cells.seeds("cotbal"), cells.summaries("cotbal"), strict=True):
        checks = s["cotbal"].get("probe_check", {}).values()
        (passed if checks and all(c["passed"] for c in checks) else failed).append(k)
    return passed, failed


def claims(cells: Cells) -> tuple[list[str], list[str]]:
    """The claims table of docs/benchmark.md and one sentence per claim, over the seeds whose
    probes all learned their task (the rule stated before the runs)."""
    rows, sentences = [], []
    ok, failed = probes_passed(cells)
    keep = set(ok)
    cb = {k: float(a.mean()) for k, a in _scores(cells, "cotbal").items() if k in keep}
    ew = {k: float(a.mean()) for k, a in _scores(cells, "ew").items() if k in keep}
    decided = paired_claim(cells, "cotbal", "ew", cb, ew)
    if decided is not None:
        common, diff, boot, word = decided
        text = "CoTBal mean score > EW's"
        rows.append(["1", text, fmt_interval(diff), fmt_interval(boot), word])
        sentences.append(claim_sentence("1", text, word, common, bootstrap_note(word, boot)))
    for key, label in REFERENCES:
        _, dE_c = _deltas_by_seed(cells, "cotbal", key)
        _, dE_e = _deltas_by_seed(cells, "ew", key)
        both = sorted(set(dE_c) & set(dE_e) & keep)
        if len(both) >= 2:
            # the paper's direction is lower dE: EW's minus CoTBal's > 0
            diff = seed_interval([dE_e[k] - dE_c[k] for k in both])
            text = f"CoTBal dE < EW's ({label})"
            rows.append(["2", text, fmt_interval(diff), "-", verdict(diff)])
            sentences.append(claim_sentence("2", text, verdict(diff), both))
    for helper, helped in ASYMMETRIES:
        c = {k: v for k, v in _contribution(cells, helper, helped).items() if k in keep}
        if len(c) >= 2:
            diff = seed_interval(list(c.values()))
            text = f"C[{helper} -> {helped}] > C[{helped} -> {helper}]"
            rows.append(["3", text, fmt_interval(diff, 3), "-", verdict(diff)])
            sentences.append(claim_sentence("3", text, verdict(diff), sorted(c)))
    excluded = (
        [f"- Seeds {failed} are left out of every claim: a probe there beat the mini model by "
         "less than 5 points on its task (table below)."] if failed else []
    )  # fmt: skip
    if not rows:
        return ["No claim is decided: each needs at least two seeds of both runs whose probes "
                "all learned their task.", *([""] + excluded if excluded else [])], []  # fmt: skip
    header = ["claim", "paper's direction (3: the scenario's check)", "difference, seeds, 95%",
              "mean score difference, paired bootstrap 95%", "verdict"]  # fmt: skip
    return plots.markdown_table(header, rows), sentences + excluded


def probe_table(cells: Cells) -> list[str]:
    """Per seed: each probe's margin over the mini model, whether it passed, its steps."""
    rows = []
    for k, s in zip(cells.seeds("cotbal"), cells.summaries("cotbal"), strict=True):
        cb = s["cotbal"]
        steps = cb.get("probe_steps", {})
        for t, chk in cb.get("probe_check", {}).items():
            rows.append([k, t, f"{chk['margin']:.1f}", "yes" if chk["passed"] else "**no**",
                         steps.get(t, "-"), steps.get("max_steps", "-")])  # fmt: skip
        rows.append([k, "mini", "-", "-", steps.get("mini", "-"), steps.get("max_steps", "-")])
    if not rows:
        return ["No CoTBal cell yet."]
    header = ["seed", "probe", "V[i, i] - v0[i] (points)", "learned (>= 5)", "steps", "cap"]
    return plots.markdown_table(header, rows)


def weight_table(cells: Cells) -> list[str]:
    """CoTBal's static weights and the adaptive weightings' last weights (mean over seeds)."""
    tasks, rows = cells.tasks(), []
    for w in cells.present(WEIGHTINGS):
        last = np.asarray([s["runs"][w]["last_weights"] for s in cells.summaries(w)], np.float64)
        rows.append([w, *[fmt_seeds(last[:, i], 2) for i in range(len(tasks))]])
    return plots.markdown_table(["weighting (CoTBal: static; others: last step)", *tasks], rows)


def base_table(cells: Cells) -> list[str]:
    """The base every run of a seed starts from: steps, validation scores, scores on the tasks."""
    tasks, rows = cells.tasks(), []
    for w in cells.present((*WEIGHTINGS, "stl")):
        for (seed, rec), s in zip(cells.base_records(w), cells.summaries(w), strict=False):
            scores = rec.get("scores") or {}
            on_tasks = s.get("base_scores")
            rows.append([seed, rec["steps"], rec.get("max_steps", rec["steps"]),
                         " / ".join(f"{k} {100 * v:.1f}" for k, v in sorted(scores.items())),
                         " / ".join(f"{t} {v:.1f}" for t, v in zip(tasks, on_tasks or [],
                                                                    strict=False)) or "-"])  # fmt: skip
        if rows:
            break  # every run of a seed starts from the same base: one cell's records
    header = ["seed", "base steps", "cap", "validation scores (0-100)", "scores on the tasks"]
    return plots.markdown_table(header, rows)


def render(cells: Cells) -> list[str]:
    """The README block of the CoTBal comparison."""
    claim_rows, sentences = claims(cells)
    out = ["Final scores (0-100, test split; mean over seeds, 95% t interval):", ""]
    out += score_table(cells) + ["", "Improvement and imbalance against the single-task "
                                 "references of the same seed (wall time and load: median "
                                 "[min-max] over seeds):", ""]  # fmt: skip
    out += delta_table(cells) + ["", "The claims of docs/benchmark.md:", ""]
    out += claim_rows + [""] + (sentences + [""] if sentences else [])
    out += ["The probes (a probe must beat the mini model on its own task by 5 points):", ""]
    out += probe_table(cells) + ["", "Task weights:", ""]
    out += weight_table(cells) + ["", "The base model every run starts from (per seed):", ""]
    out += base_table(cells)
    return out
