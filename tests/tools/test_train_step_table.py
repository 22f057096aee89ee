"""The train-step table counts only runs the tool marked valid, and the docs hold what it gives."""

import os

from tools.bench import train_step_table as T
from tools.method_bench.readme_blocks import markers

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _runs(folder: str) -> list[str]:
    d = os.path.join(ROOT, "bench_results", folder)
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.startswith("run"))


RUNS = _runs("train_step_quiet")  # before issue 19's matmul layouts
LAYOUT_RUNS = _runs("train_step_quiet_layouts")  # the current code, AVX2 host
ZEN4_RUNS = _runs("train_step_zen4")  # the same code on the Zen 4 host
BLOCKS_RUNS = _runs("train_step_zen4_blocks")  # with 4 causal query blocks, Zen 4 host
TABLES_RUNS = _runs("train_step_zen4_vjp")  # with the RoPE tables (question 11), Zen 4 host
HOST_MEMORY_RUNS = _runs("train_step_zen4_host_memory")  # and kept host memory (questions 12, 14)
OWN_PROCESS_RUNS = _runs("train_step_zen4_own_process")  # PyTorch in its own process (question 15)


def test_invalid_runs_are_left_out_and_listed():
    lines = T.table(RUNS)
    tiny = next(x for x in lines if x.startswith("| tiny |"))
    assert tiny.startswith(f"| tiny | 0 of {len(RUNS)} | - |")
    assert any("tiny: jax's step times spread" in x for x in lines)
    small = next(x for x in lines if x.startswith("| small |"))
    assert small.startswith(f"| small | {len(RUNS)} of {len(RUNS)} |")


def test_benchmarks_and_readme_hold_the_generated_tables():
    blocks = {
        "BENCHMARKS.md": [
            ("train-step-quiet", RUNS),
            ("train-step-layouts", LAYOUT_RUNS),
            ("train-step-zen4", ZEN4_RUNS),
            ("train-step-zen4-blocks", BLOCKS_RUNS),
            ("train-step-zen4-vjp", TABLES_RUNS),
            ("train-step-zen4-host-memory", HOST_MEMORY_RUNS),
            ("train-step-zen4-own-process", OWN_PROCESS_RUNS),
        ],
        "README.md": [
            ("train-step-layouts", LAYOUT_RUNS),
            ("train-step-zen4-host-memory", HOST_MEMORY_RUNS),
        ],
    }
    for doc, wanted in blocks.items():
        text = open(os.path.join(ROOT, doc)).read()
        for block, runs in wanted:
            want = "\n".join(T.table(runs))
            begin, end = markers(block, T.TOOL)
            assert f"{begin}\n{want}\n{end}" in text, (
                f"{doc}: rerun tools.bench train_step_table --block {block} --write"
            )


def _paired_row(low, high, quiet=True, kept=None):
    row = {"config": "small", "rounds": 10, "steps_per_block": 2, "machine_quiet": quiet,
           "machine": {"others_share": 0.004 if quiet else 0.3},
           "paired_speedup": (low + high) / 2, "paired_ci": [low, high], "round_wins": 9}  # fmt: skip
    if kept:
        row.update(paired_speedup_vs_torch_kept=sum(kept) / 2, paired_ci_vs_torch_kept=list(kept),
                   round_wins_vs_torch_kept=6)  # fmt: skip
    return row


def test_paired_rule_needs_two_quiet_runs_whose_intervals_clear_one():
    assert T.paired_verdict([_paired_row(1.05, 1.2), _paired_row(1.02, 1.1)]).startswith("met")
    # A loaded run does not count, whatever its interval says.
    loaded = _paired_row(0.5, 0.6, quiet=False)
    assert T.paired_verdict([_paired_row(1.05, 1.2), loaded]).startswith("undecided (1 quiet")
    assert T.paired_verdict([_paired_row(1.05, 1.2), _paired_row(0.97, 1.1)]) == (
        "undecided (a quiet run's interval contains 1.00)"
    )
    assert T.paired_verdict([_paired_row(1.05, 1.2), _paired_row(0.9, 0.98)]).startswith("not met")
    assert T.paired_verdict([_paired_row(0.9, 0.98)]).startswith("not met")  # even alone


def test_paired_lines_report_each_run_and_each_baselines_verdict():
    runs = [("run1.json", {"rows": [_paired_row(1.05, 1.2, kept=(0.98, 1.08))]}),
            ("run2.json", {"rows": [_paired_row(1.04, 1.1, kept=(1.01, 1.05))]}),
            ("old.json", {"rows": [{"config": "small"}]})]  # fmt: skip
    lines = T.paired_lines(runs, ["small", "tiny"])
    assert lines[0] == ""
    assert lines[1] == (
        "- run1.json small, 10 rounds of 2 steps, machine quiet (others' CPU 0.4%): paired ratio "
        "against PyTorch as shipped 1.125x [1.050-1.200], faster in 9 of 10 rounds; against "
        "PyTorch with jaxlvlm's setting 1.030x [0.980-1.080], faster in 6 of 10 rounds."
    )
    assert (
        lines[3]
        == "- small, paired rule against PyTorch as shipped: met (2 quiet runs, every interval above 1.00)."
    )
    assert lines[4] == (
        "- small, paired rule against PyTorch with jaxlvlm's setting: undecided (a quiet run's "
        "interval contains 1.00)."
    )
    assert len(lines) == 5
    assert T.paired_lines([("old.json", {"rows": [{"config": "small"}]})], ["small"]) == []
