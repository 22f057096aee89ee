"""tools/bench/layouts.py: every layout pair runs, and each layout's gradients equal the one it
replaced to float tolerance (the benchmark compares like with like)."""

from tools.bench.common import BENCH_CONFIGS
from tools.bench.layouts import run


def test_each_layout_pair_runs_and_agrees_with_the_layout_it_replaced():
    rows, quiet = run(BENCH_CONFIGS["tiny"], rounds=1, iters=1)
    pairs = {(r["pair"], r["layout"]) for r in rows}
    assert {p for p, _ in pairs} == {"mlp", "lm_head", "attention"}
    assert len(pairs) == 6
    for r in rows:
        assert r["ms"] > 0 and r["max_grad_diff"] < 1e-4, r
    assert isinstance(quiet["invalid"], list) and "load_before" in quiet


def test_benchmarks_holds_the_generated_layouts_block():
    import json
    import os

    from tools.bench.layouts import ROOT, TOOL, table
    from tools.method_bench.readme_blocks import markers

    with open(os.path.join(ROOT, "bench_results", "layouts.json")) as f:
        want = "\n".join(table(json.load(f)))
    text = open(os.path.join(ROOT, "BENCHMARKS.md")).read()
    begin, end = markers("layouts", TOOL)
    assert f"{begin}\n{want}\n{end}" in text, "rerun tools.bench layouts --render ... --write"
