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
PAIRED_RUNS = _runs("train_step_zen4_paired")  # ten paired rounds per run (question 16)
REPLICATION_RUNS = _runs("train_step_zen4_paired_replication")  # question 17


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
            ("train-step-zen4-paired", PAIRED_RUNS),
            ("train-step-zen4-paired-replication", REPLICATION_RUNS),
        ],
        "README.md": [
            ("train-step-layouts", LAYOUT_RUNS),
            ("train-step-zen4-paired", PAIRED_RUNS),
            ("train-step-zen4-paired-replication", REPLICATION_RUNS),
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


def _paired_row(torch, jax=2.0, quiet=True, kept=None):
    """A 10-round run: block medians of jaxlvlm (constant ``jax``), PyTorch and PyTorch kept."""
    medians = {"jax": [jax] * 10, "torch": list(torch)}
    if kept is not None:
        medians["torch_kept"] = list(kept)
    return {"config": "small", "rounds": 10, "steps_per_block": 2, "machine_quiet": quiet,
            "machine": {"others_share": 0.004 if quiet else 0.3}, "block_medians_s": medians}  # fmt: skip


def _result(low, high):
    return {"paired_speedup": (low + high) / 2, "paired_ci": [low, high], "round_wins": 5}


def test_paired_rule_needs_two_quiet_runs_whose_intervals_clear_one():
    v = T.paired_verdict
    assert v([(True, _result(1.05, 1.2)), (True, _result(1.02, 1.1))]).startswith("met")
    # A loaded run does not count, whatever its interval says.
    assert v([(True, _result(1.05, 1.2)), (False, _result(0.5, 0.6))]).startswith(
        "undecided (1 quiet"
    )
    assert v([(True, _result(1.05, 1.2)), (True, _result(0.97, 1.1))]) == (
        "undecided (a quiet run's interval contains 1.00)"
    )
    assert v([(True, _result(1.05, 1.2)), (True, _result(0.9, 0.98))]).startswith("not met")
    assert v([(True, _result(0.9, 0.98))]).startswith("not met")  # even alone


def test_paired_lines_are_computed_from_the_runs_block_medians():
    steady = [2.2] * 10  # PyTorch 10% slower in every round
    mixed = [2.1, 1.9] * 5  # PyTorch ahead in half the rounds, behind in the others
    runs = [("run1.json", {"rows": [_paired_row(steady, kept=mixed)]}),
            ("run2.json", {"rows": [_paired_row(steady, kept=mixed)]}),
            ("old.json", {"rows": [{"config": "small"}]})]  # fmt: skip
    lines = T.paired_lines(runs, ["small", "tiny"])
    assert lines[0] == ""
    assert lines[1].startswith(
        "- run1.json small, 10 rounds of 2 steps, machine quiet (others' CPU 0.4%): paired ratio "
        "against PyTorch as shipped 1.100x [1.100-1.100], faster in 10 of 10 rounds; against "
        "PyTorch with jaxlvlm's setting 0.999x ["
    )
    assert lines[1].endswith("faster in 5 of 10 rounds.")
    assert lines[3] == (
        "- small, paired rule against PyTorch as shipped: met (2 quiet runs, every interval "
        "above 1.00)."
    )
    assert lines[4] == (
        "- small, paired rule against PyTorch with jaxlvlm's setting: undecided (a quiet run's "
        "interval contains 1.00)."
    )
    assert len(lines) == 5
    slower = [("run1.json", {"rows": [_paired_row([1.8] * 10)]})]
    assert T.paired_lines(slower, ["small"])[-1] == (
        "- small, paired rule against PyTorch as shipped: not met (a quiet run's interval lies "
        "below 1.00)."
    )
    assert T.paired_lines([("old.json", {"rows": [{"config": "small"}]})], ["small"]) == []
