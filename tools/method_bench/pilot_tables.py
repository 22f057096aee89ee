"""The Pilot comparisons' README tables (pilot_multimodal, pilot_mixed), from collected cells.

Every number is computed here from the committed summaries (collect.py): the score of each
approach as the mean over clients (each client's personalised model on its task's test split; two
clients per task, so also the mean over tasks) and per task, as seed means with 95% t intervals;
the claims of docs/benchmark.md with their seed and paired-bootstrap intervals and verdicts; the
per-round curves (each schedule entry's evaluation of every client on the first test samples of
its task, method.round_eval_num); the weights Pilot's server gave each client's LoRA per round
(ATA, eq. 16); the base model's validation scores; each cell's wall time and load.
"""

from __future__ import annotations

import json
import os

import numpy as np

from jaxlvlm.eval import plots
from tools.method_bench.tables_common import (
    Cells,
    base_table,
    bootstrap_note,
    claim_sentence,
    fmt_interval,
    fmt_range,
    fmt_seeds,
    paired_claim,
)

APPROACHES = ("pilot", "fedavg", "fedprox", "local", "centralized")
CLAIMS = (
    ("1", "Pilot > FedAvg (mean over clients)", "pilot", "fedavg"),
    ("2", "Pilot > local (mean over clients)", "pilot", "local"),
)


def _client_mean(s: dict) -> float:
    """The mean score (0-100) over a cell's clients."""
    return float(np.mean([c["score"] for c in s["clients"]]))


def _local_steps(s: dict) -> int:
    """Training steps of a cell: the clients' local steps over all rounds, or centralized's."""
    if "train_steps" in s:
        return int(s["train_steps"])
    return sum(int(r["local_steps"]) for r in s["rounds"])


def main_table(cells: Cells) -> list[str]:
    tasks = cells.tasks()
    rows = []
    for a in cells.present(APPROACHES):
        sums = cells.summaries(a)
        row = [a, len(sums), fmt_seeds([_client_mean(s) for s in sums])]
        row += [fmt_seeds([s["per_task"][t] for s in sums]) for t in tasks]
        row.append(fmt_range([_local_steps(s) for s in sums], "{:.0f}"))
        rows.append(row)
    header = ["approach", "seeds", "mean over clients", *tasks, "train steps (all clients)"]
    return plots.markdown_table(header, rows)


def claims(cells: Cells) -> tuple[list[str], list[str]]:
    """The claims table and one sentence per claim (a claim needs two seeds of both approaches)."""
    rows, sentences = [], []
    for num, text, a, b in CLAIMS:
        va = {k: _client_mean(s) for k, s in zip(cells.seeds(a), cells.summaries(a), strict=True)}
        vb = {k: _client_mean(s) for k, s in zip(cells.seeds(b), cells.summaries(b), strict=True)}
        decided = paired_claim(cells, a, b, va, vb)
        if decided is None:
            continue
        common, diff, boot, word = decided
        rows.append([num, text, fmt_interval(diff), fmt_interval(boot), word])
        sentences.append(claim_sentence(num, text, word, common, bootstrap_note(word, boot)))
    if not rows:
        return ["No claim is decided yet: each needs at least two seeds of both approaches."], []
    header = ["claim", "paper's direction", "difference, seeds, 95%",
              "difference of the per-sample final scores, paired bootstrap 95%", "verdict"]  # fmt: skip
    return plots.markdown_table(header, rows), sentences


def entry_name(r: dict) -> str:
    """A schedule entry's label, e.g. 'round 2 (stage2)'; the baseline entry without a stage."""
    return f"round {r['round']}" + (f" ({r['stage']})" if r["stage"] != "baseline" else "")


def _first_per_task(cells: Cells, n: int) -> np.ndarray:
    """[N] bool over test_ids.json: the first ``n`` test samples of every task (the samples a
    round evaluation of ``n`` scores; builtin ids end in a zero-padded index, so sorted ids keep
    the samples' order)."""
    with open(os.path.join(cells.dir, "test_ids.json")) as f:
        ids = json.load(f)["ids"]
    taken: dict[str, int] = {}
    keep = []
    for i in ids:
        task = i.split("/", 1)[0]
        keep.append(taken.get(task, 0) < n)
        taken[task] = taken.get(task, 0) + 1
    return np.asarray(keep)


def curve_table(cells: Cells) -> list[str]:
    """Per approach and schedule entry: the mean over clients of the round evaluation (seed mean,
    95% t interval). Centralized has no rounds: its final model on the same first samples."""
    rows, n_eval = [], set()
    for a in cells.present(APPROACHES):
        sums = cells.summaries(a)
        entries = [[r for r in s["rounds"] if "eval" in r] for s in sums]
        if a == "centralized" or not any(entries):
            continue
        for i, r in enumerate(entries[0]):
            scores = [float(np.mean(list(e[i]["eval"].values()))) for e in entries if len(e) > i]
            ce = [e[i]["mean_train_ce"] for e in entries if len(e) > i]
            n_eval.add(int(r["eval_samples"]))
            rows.append([a, entry_name(r), fmt_seeds(scores), f"{np.mean(ce):.3f}"])
    if not rows:
        return ["No cell has a per-round evaluation (method.round_eval_num = 0)."]
    if "centralized" in cells.present(APPROACHES) and len(n_eval) == 1:
        mask = _first_per_task(cells, n_eval.pop())
        seeds = cells.seeds("centralized")
        ends = [100.0 * float(cells.final_scores("centralized", k)[mask].mean()) for k in seeds]
        rows.append(["centralized", "end only (no rounds)", fmt_seeds(ends), "-"])
    header = ["approach", "after", "mean over clients (round evaluation)", "train CE"]
    return plots.markdown_table(header, rows)


def weights_table(cells: Cells) -> list[str]:
    """Pilot's ATA weights per schedule entry and client, split into the client's own LoRA, the
    other client of its task, and the clients of other tasks (mean over seeds)."""
    sums = cells.summaries("pilot")
    if not sums or not any(r.get("aggregation_weights") for r in sums[0]["rounds"]):
        return ["No Pilot cell with recorded aggregation weights."]
    names = [c["name"] for c in sums[0]["clients"]]
    task = np.asarray([c["task"] for c in sums[0]["clients"]])
    same = (task[:, None] == task[None, :]) & ~np.eye(len(names), dtype=bool)
    rows = []
    for i, r in enumerate(sums[0]["rounds"]):
        ws = [np.asarray(s["rounds"][i]["aggregation_weights"]) for s in sums]
        w = np.mean(ws, axis=0)  # [K, K], row k: what client k's LoRA took from each client
        for k, name in enumerate(names):
            others = np.where(same[k] | (np.arange(len(names)) == k), 0.0, w[k])
            top = names[int(np.argmax(others))] if others.max() > 0 else "-"
            rows.append([entry_name(r), name, f"{w[k, k]:.3f}", f"{w[k][same[k]].sum():.3f}",
                         f"{others.sum():.3f}", top])  # fmt: skip
    header = ["after", "client", "own", "same task", "other tasks", "largest other-task weight"]
    return plots.markdown_table(header, rows)


def cost_table(cells: Cells) -> list[str]:
    rows = []
    for a in cells.present(APPROACHES):
        for seed, rec in zip(cells.seeds(a), cells.records(a), strict=True):
            rows.append([a, seed, f"{rec['wall_s']:.0f}", f"{rec['load_before'][0]:.1f}",
                         f"{rec['load_after'][0]:.1f}",
                         "yes" if rec.get("copied_from_seed") else "no (trained it)"])  # fmt: skip
    header = ["approach", "seed", "wall s", "load before", "load after", "base copied"]
    return plots.markdown_table(header, rows)


def render(cells: Cells) -> list[str]:
    """The README block of a Pilot comparison."""
    claim_rows, sentences = claims(cells)
    out: list[str] = [
        "Final scores (0-100; each client's personalised model on its task's test split; mean "
        "over seeds, 95% t interval; train steps as median [min-max] over seeds):",
        "",
    ]
    out += main_table(cells) + ["", "The claims of docs/benchmark.md:", ""]
    out += claim_rows + [""] + (sentences + [""] if sentences else [])
    out += [
        "Per-round curves: after every schedule entry, each client's model on the first test "
        "samples of its task (method.round_eval_num), mean over clients; Pilot's round 1 runs "
        "stage 1 then stage 2. Centralized training has no rounds and is shown at the end only, "
        "on the same samples:",
        "",
    ]
    out += curve_table(cells) + [
        "",
        "The weights Pilot's server gave each client's LoRA (ATA, eq. 16; mean over seeds): its "
        "own, the other client of its task, the clients of other tasks. FedAvg and FedProx weight "
        "every client by its data size (equal here):",
        "",
    ]
    out += weights_table(cells) + ["", "The base model every approach starts from (per seed):", ""]
    out += base_table(cells, APPROACHES, "No base record was collected.") + [
        "",
        "Wall time and machine load (1-minute average) per cell:",
        "",
    ]
    out += cost_table(cells)
    return out
