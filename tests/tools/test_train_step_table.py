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
