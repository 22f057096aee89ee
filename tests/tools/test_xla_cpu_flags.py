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
     ("xla-cpu-flags-zen4-width", "xla_cpu_flags_zen4_width.json")],
)  # fmt: skip
def test_benchmarks_holds_the_generated_flag_blocks(block, name):
    assert_block_rendered(block, name, table, TOOL)
