"""tools/bench/xla_cpu_flags.py: the plan's adoption rule and the committed BENCHMARKS block."""

import pytest

from tests.tools.rendered_blocks import assert_block_rendered
from tools.bench.xla_cpu_flags import TOOL, table, verdict

DEFAULT = {"flags": "default", "step_s": 2.0, "range_s": "1.950-2.100", "vs_default": 1.0,
           "tok_s": 1000.0, "max_loss_diff": 0.0}  # fmt: skip


def _row(step: float, low: float, high: float, loss_diff: float = 0.0) -> dict:
    return {"flags": "--x", "step_s": step, "range_s": f"{low:.3f}-{high:.3f}",
            "vs_default": DEFAULT["step_s"] / step, "tok_s": 2000 / step,
            "max_loss_diff": loss_diff}  # fmt: skip


@pytest.mark.parametrize(
    "row, want",
    [
        (_row(1.80, 1.75, 1.85), "adopt"),
        (_row(1.96, 1.90, 1.94), "no: under 5% faster"),
        (_row(1.80, 1.75, 1.97), "no: ranges overlap"),
        (_row(2.20, 2.15, 2.30), "no: slower than the default"),
        (_row(1.80, 1.75, 1.85, loss_diff=3e-4), "no: losses differ by 3.0e-04"),
        ({"flags": "--x", "error": "unknown flag"}, "did not run"),
    ],
)
def test_a_flag_is_adopted_only_when_faster_apart_and_exact(row, want):
    assert verdict(row, DEFAULT) == want


@pytest.mark.parametrize(
    "block, name",
    [("xla-cpu-flags-threads", "xla_cpu_flags_threads.json"),
     ("xla-cpu-flags-zen4-width", "xla_cpu_flags_zen4_width.json"),
     ("xla-cpu-flags-host-memory", "xla_cpu_flags_host_memory.json"),
     ("xla-cpu-flags-host-memory-paired", "xla_cpu_flags_host_memory_paired.json")],
)  # fmt: skip
def test_benchmarks_holds_the_generated_flag_blocks(block, name):
    assert_block_rendered(block, name, table, TOOL)


def test_the_paired_rule_reads_the_interval_not_the_ranges():
    faster = dict(_row(1.80, 1.60, 2.20), paired_speedup=1.1, paired_ci=[1.04, 1.16])
    assert verdict(faster, DEFAULT, "paired") == "adopt"
    assert verdict(faster, DEFAULT) == "no: ranges overlap"
    level = dict(faster, paired_ci=[0.97, 1.16])
    assert verdict(level, DEFAULT, "paired") == "no: paired interval reaches 1"
    slower = dict(_row(2.2, 2.0, 2.4), paired_speedup=0.9, paired_ci=[0.85, 0.95])
    assert verdict(slower, DEFAULT, "paired") == (
        "no: slower than the default, paired interval below 1"
    )


def test_a_set_splits_into_xla_flags_and_environment():
    from tools.bench.xla_cpu_flags import split_set

    assert split_set("default") == ("", {})
    assert split_set("--xla_a=1 env:JAXLVLM_KEEP_HOST_MEMORY=0 --xla_b=2") == (
        "--xla_a=1 --xla_b=2",
        {"JAXLVLM_KEEP_HOST_MEMORY": "0"},
    )
    assert split_set("default env:A=") == ("", {"A": ""})
    with pytest.raises(ValueError, match="'env:A' is not env:NAME=value"):
        split_set("env:A")


def test_the_block_reports_each_sets_kernel_work():
    quiet = {"load_before": [1.0], "load_after": [1.2], "others_share": 0.004}
    rows = [dict(DEFAULT, page_faults_per_step=250_000.0, system_s_per_step=0.5,
                 host_memory=["applied"]),
            dict(_row(1.8, 1.75, 1.85), flags="env:X=0", page_faults_per_step=12.0,
                 system_s_per_step=0.01, host_memory=["disabled by X=0"])]  # fmt: skip
    lines = table({"config": "small", "rounds": 3, "iters": 4, "rows": rows, "quiet": quiet}, "r")
    assert lines[-1] == (
        "Kernel work per step, median over the rounds: `default` 250,000 page faults and 0.500 s "
        "system CPU (host memory: applied); `env:X=0` 12 page faults and 0.010 s system CPU "
        "(host memory: disabled by X=0)."
    )


def test_readme_holds_the_host_memory_block():
    assert_block_rendered(
        "xla-cpu-flags-host-memory-paired",
        "xla_cpu_flags_host_memory_paired.json",
        table,
        TOOL,
        doc="README.md",
    )
