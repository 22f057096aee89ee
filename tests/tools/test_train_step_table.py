"""The train-step table counts only runs the tool marked valid, and the docs hold what it gives."""

import os

from tools.bench import train_step_table as T
from tools.method_bench.readme_blocks import markers

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
RUNS = sorted(
    os.path.join(ROOT, "bench_results", "train_step_quiet", f)
    for f in os.listdir(os.path.join(ROOT, "bench_results", "train_step_quiet"))
    if f.startswith("run")
)


def test_invalid_runs_are_left_out_and_listed():
    lines = T.table(RUNS)
    tiny = next(x for x in lines if x.startswith("| tiny |"))
    assert tiny.startswith(f"| tiny | 0 of {len(RUNS)} | - |")
    assert any("tiny: jax's step times spread" in x for x in lines)
    small = next(x for x in lines if x.startswith("| small |"))
    assert small.startswith(f"| small | {len(RUNS)} of {len(RUNS)} |")


def test_benchmarks_and_readme_hold_the_generated_table():
    want = "\n".join(T.table(RUNS))
    for doc in ("BENCHMARKS.md", "README.md"):
        text = open(os.path.join(ROOT, doc)).read()
        begin, end = markers("train-step-quiet", T.TOOL)
        assert f"{begin}\n{want}\n{end}" in text, (
            f"{doc}: rerun tools.bench train_step_table --write"
        )
