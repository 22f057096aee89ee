"""Which RuntimeConfig choices make jaxlvlm's whole train step faster, and do they change its results?

python -m tools.bench step_ab --config small [--rounds 5] [--iters 3]
    --variants "attention_query_blocks=1;attention_query_blocks=4" [--out bench_results/step_ab.json]
python -m tools.bench step_ab --render bench_results/step_ab_query_blocks.json
    --block step-ab-query-blocks [--write]   (that run's table as a BENCHMARKS block)

Every variant is jaxlvlm's real jitted step (tools/bench/train_step.py: jax_train_step) on the same
saved model and batch, built in one process with RuntimeConfig overrides ('name=value' pairs joined
by ','; the first variant is the reference). Rounds interleave the variants (round 1: every variant,
then round 2: ...), so machine noise hits each alike. Per variant: the median of its rounds' median
step times with the range, its speed against the reference, in how many rounds it beat the reference
(paired within the round), and the largest difference of its first three losses from the
reference's. Unlike XLA flags, runtime options can share a process, so they are compared that way.
"""

from __future__ import annotations

import argparse
import ast
import sys
import tempfile
import time

import numpy as np

from tools.bench.common import BENCH_CONFIGS, print_table, write_json
from tools.bench.host import host_key, on_host
from tools.bench.quiet import OthersMonitor
from tools.bench.render_block import add_render_args, render

TOOL = "python -m tools.bench step_ab --render"
# The adoption rule of BENCHMARKS' plan for an exact change (same arithmetic, less work): a variant
# becomes the default when its median step is at least this much faster than the reference's ...
ADOPT_SPEEDUP = 1.02
# ... it beats the reference in at least this share of the rounds (paired within each round) ...
ADOPT_ROUND_WINS = 0.8
# ... and its first losses are within this of the reference's. The 'paired' rule (for step-to-step
# noise as large as the effect, where 80% round wins is out of reach even for a real gain) asks
# instead that the 95% bootstrap interval of the per-round paired speed-up lie above 1.
ADOPT_LOSS_DIFF = 1e-5
RULES = ("wins", "paired")
BOOTSTRAP_SAMPLES = 2000


def paired_speedup(ref: list[float], var: list[float], seed: int = 0) -> tuple[float, float, float]:
    """Geometric mean over rounds of ref / var step time, and its 95% bootstrap interval (rounds
    resampled with replacement, seeded)."""
    logs = np.log(np.asarray(ref)) - np.log(np.asarray(var))
    rng = np.random.default_rng(seed)
    boots = rng.choice(logs, size=(BOOTSTRAP_SAMPLES, len(logs)), replace=True).mean(axis=1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return float(np.exp(logs.mean())), float(np.exp(low)), float(np.exp(high))


def interval_side(low: float, high: float) -> str:
    """Where a speed-up's interval lies against 1 (no change): 'above', 'below' or 'contains'.
    The one reading of a paired interval that every benchmark rule here shares."""
    if low > 1.0:
        return "above"
    return "below" if high < 1.0 else "contains"


def parse_variant(text: str) -> dict:
    """'attention_query_blocks=4,remat_text=dots' -> {'attention_query_blocks': 4, ...}; 'default'
    or '' -> {}. Values are Python literals where they parse as one, strings otherwise."""
    overrides = {}
    for part in (p.strip() for p in text.split(",")):
        if not part or part == "default":
            continue
        if "=" not in part:
            raise ValueError(f"variant part '{part}' is not name=value (in '{text}')")
        name, value = (x.strip() for x in part.split("=", 1))
        try:
            overrides[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[name] = value
    return overrides


def verdict(row: dict, rule: str = "wins") -> str:
    """The plan's rule for one variant against the reference: 'adopt' only when at least 2% faster
    by median, its first losses within 1e-5, and ('wins') faster in at least 80% of the rounds or
    ('paired') the 95% interval of its paired speed-up above 1."""
    failed = []
    if row["vs_reference"] < ADOPT_SPEEDUP:
        failed.append("slower than the reference" if row["vs_reference"] < 1 else "under 2% faster")
    if rule == "wins" and row["round_wins"] < ADOPT_ROUND_WINS * row["rounds"]:
        failed.append(f"faster in {row['round_wins']} of {row['rounds']} rounds")
    if rule == "paired" and interval_side(*row["paired_ci"]) != "above":
        failed.append("paired interval reaches 1")
    if row["max_loss_diff"] > ADOPT_LOSS_DIFF:
        failed.append(f"losses differ by {row['max_loss_diff']:.1e}")
    return "adopt" if not failed else "no: " + ", ".join(failed)


def rows_of(variants: list[str], rounds: list[dict[str, float]], losses: dict, tokens: int):
    """Per variant: median [range] of the per-round medians, speed and round wins against the
    first variant, tokens/s, the largest first-loss difference from the first variant's."""
    ref = variants[0]
    ref_step = float(np.median([r[ref] for r in rounds]))
    rows = []
    for v in variants:
        meds = [r[v] for r in rounds]
        step = float(np.median(meds))
        paired, low, high = paired_speedup([r[ref] for r in rounds], meds)
        rows.append({
            "variant": v,
            "step_s": step,
            "range_s": f"{min(meds):.3f}-{max(meds):.3f}",
            "vs_reference": ref_step / step,
            "round_wins": sum(r[v] < r[ref] for r in rounds),
            "paired_speedup": paired,
            "paired_ci": [low, high],
            "rounds": len(rounds),
            "tok_s": tokens / step,
            "max_loss_diff": float(np.max(np.abs(np.asarray(losses[v]) - losses[ref]))),
        })  # fmt: skip
    return rows


def table(payload: dict, name: str) -> list[str]:
    """A run's BENCHMARKS block: per variant the median step [range over rounds], its speed and
    round wins against the reference, its first losses' largest difference and the verdict."""
    quiet = payload["quiet"]
    rule = payload.get("rule", "wins")
    if "per_round_s" in payload:  # the figures from the raw rounds, whatever version wrote the rows
        rows = payload["rows"]
        tokens = round(rows[0]["tok_s"] * rows[0]["step_s"])
        variants = [r["variant"] for r in rows]
        payload = dict(payload, rows=rows_of(variants, payload["per_round_s"],
                                             payload["first_losses"], tokens))  # fmt: skip
    on = on_host(host_key(payload))
    asks = ">= 80% of rounds" if rule == "wins" else "paired interval above 1"
    lines = [f"`{payload['config']}`{on}, {payload['rounds']} rounds of {payload['iters']} steps "
             f"({name}, {payload.get('time', 'time not recorded')}); load average "
             f"{quiet['load_before'][0]:.1f} before and {quiet['load_after'][0]:.1f} after, other "
             f"processes {quiet['others_share']:.1%} of the CPU:", "",
             "| variant | step s, median [range over rounds] | speed vs reference | rounds faster "
             "| paired speed-up [95% interval] | tokens/s | largest first-loss difference "
             f"| rule (>= 2% faster, {asks}, losses 1e-5) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for i, r in enumerate(payload["rows"]):
        verdict_text = "(the reference)" if i == 0 else verdict(r, rule)
        wins = "-" if i == 0 else f"{r['round_wins']} of {r['rounds']}"
        low, high = r["paired_ci"]
        paired = "-" if i == 0 else f"{r['paired_speedup']:.3f}x [{low:.3f}-{high:.3f}]"
        lines.append(f"| `{r['variant']}` | {r['step_s']:.3f} [{r['range_s']}] | "
                     f"{r['vs_reference']:.3f}x | {wins} | {paired} | {r['tok_s']:.0f} | "
                     f"{r['max_loss_diff']:.1e} | {verdict_text} |")  # fmt: skip
    return lines


def compare(runs: dict, losses: dict, config: str, rounds: int, iters: int, rule: str) -> dict:
    """Times the built steps ``runs`` ({variant: run one step}, the first the reference) in
    ``rounds`` interleaved rounds of ``iters`` steps and returns the result payload (rows, the
    per-round medians, the first losses, the quiet-machine record)."""
    variants = list(runs)
    per_round: list[dict[str, float]] = []
    with OthersMonitor() as monitor:
        for _ in range(rounds):
            this = {}
            for v in variants:
                runs[v]()  # one untimed step: the variant's buffers and code back in cache
                times = []
                for _ in range(iters):
                    t0 = time.perf_counter()
                    runs[v]()
                    times.append(time.perf_counter() - t0)
                this[v] = float(np.median(times))
            per_round.append(this)
    cfg = BENCH_CONFIGS[config]
    rows = rows_of(variants, per_round, losses, cfg["batch"] * cfg["seq"])
    print_table(rows, ["variant", "step_s", "range_s", "vs_reference", "round_wins", "tok_s",
                       "max_loss_diff"])  # fmt: skip
    return {"config": config, "rounds": rounds, "iters": iters, "rows": rows, "rule": rule,
            "per_round_s": per_round, "first_losses": losses, "quiet": monitor.result()}  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="small", choices=sorted(BENCH_CONFIGS))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument(
        "--variants", default="default", help="';'-separated, the first is the reference"
    )
    p.add_argument("--out", default="bench_results/step_ab.json")
    p.add_argument("--rule", default="wins", choices=RULES, help="the adoption rule (verdict)")
    add_render_args(p, "step-ab")
    a = p.parse_args(argv)
    if a.render:
        return render(a, table, TOOL)
    from tools.bench.hf_reference import build_torch_llava, make_inputs, save_torch_llava
    from tools.bench.train_step import jax_batch, jax_train_step

    variants = [v.strip() for v in a.variants.split(";") if v.strip()]
    overrides = {v: parse_variant(v) for v in variants}  # bad text fails before any work
    cfg = BENCH_CONFIGS[a.config]
    batch = jax_batch(make_inputs(cfg))
    runs, losses = {}, {}
    with tempfile.TemporaryDirectory() as d:
        save_torch_llava(build_torch_llava(cfg), d)
        for v in variants:
            run, _, _, first, _ = jax_train_step(d, batch, overrides[v])
            runs[v] = run
            losses[v] = [first] + [float(run()) for _ in range(2)]
    payload = compare(runs, losses, a.config, a.rounds, a.iters, a.rule)
    payload["argv"] = argv if argv is not None else sys.argv[1:]
    write_json(a.out, payload)
    return payload


if __name__ == "__main__":
    main()
