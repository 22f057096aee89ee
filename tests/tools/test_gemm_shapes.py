"""tools/bench/gemm_shapes.py: the dots are the step's (FLOPs add up to the model's matmul work),
and every side (XLA as stored, XLA via NN, PyTorch) computes the same product as numpy."""

import numpy as np
import pytest

from tools.bench.common import BENCH_CONFIGS
from tools.bench.gemm_shapes import (
    flops,
    jax_fns,
    operands,
    per_step,
    reference,
    step_dots,
    torch_fn,
)


def test_the_dots_carry_three_times_the_forward_flops_of_the_decoder_and_head():
    cfg = BENCH_CONFIGS["small"]
    t = cfg["text"]
    tokens, c, f, v = cfg["batch"] * cfg["seq"], t["hidden"], t["inter"], t["vocab"]
    kv_dim = t["kv_heads"] * (c // t["heads"])
    per_layer = 2 * tokens * (2 * c * c + 2 * c * kv_dim + 3 * c * f)
    # Causal attention as run (no skipped blocks): scores and values, every (query head, key).
    attention = 2 * 2 * cfg["batch"] * t["heads"] * cfg["seq"] ** 2 * (c // t["heads"])
    forward = t["layers"] * (per_layer + attention) + 2 * tokens * c * v
    total = sum(d["count"] * flops(d) for d in step_dots(cfg))
    assert total == pytest.approx(3 * forward)


@pytest.mark.parametrize("index", range(len(step_dots(BENCH_CONFIGS["tiny"]))))
def test_every_side_computes_the_dot(index):
    dot = step_dots(BENCH_CONFIGS["tiny"])[index]
    a, b = operands(dot, seed=index)
    want = reference(dot, a, b)
    assert want.shape[-2:] == (dot["m"], dot["n"])
    sides = dict(jax_fns(dot, a, b), torch=torch_fn(dot, a, b))
    assert set(sides) == (
        {"jax", "torch"} if dot["form"] == "NN" else {"jax", "jax via NN", "torch"}
    )
    for name, fn in sides.items():
        got = np.asarray(fn())
        np.testing.assert_allclose(
            got, want, rtol=1e-4, atol=1e-3 * np.sqrt(dot["k"]), err_msg=name
        )


def test_per_step_weights_each_dot_by_how_often_the_step_runs_it():
    rows = [
        {"count": 2, "jax ms": 3.0, "jax via NN ms": 1.0, "torch ms": 2.0},
        {"count": 1, "jax ms": 5.0, "torch ms": 4.0},
    ]
    assert per_step(rows) == {"jax": 11.0, "torch": 8.0, "jax best form": 7.0}


def test_benchmarks_holds_the_generated_gemm_shapes_block():
    import glob
    import json
    import os

    from tools.bench.gemm_shapes import ROOT, TOOL, table
    from tools.method_bench.readme_blocks import markers

    paths = sorted(glob.glob(os.path.join(ROOT, "bench_results", "gemm_shapes", "run*.json")))
    assert paths, "the committed gemm_shapes runs are missing"
    payloads = [(p, json.load(open(p))) for p in paths]
    want = "\n".join(table(payloads))
    text = open(os.path.join(ROOT, "BENCHMARKS.md")).read()
    begin, end = markers("gemm-shapes", TOOL)
    assert f"{begin}\n{want}\n{end}" in text, "rerun tools.bench gemm_shapes --render ... --write"


def _payload(jax_ms: float, invalid: list[str]) -> dict:
    row = {"name": "q_proj / o_proj forward", "form": "NN", "batch": 1, "m": 4, "k": 4, "n": 4,
           "count": 2, "gflop": 1.0, "jax ms": jax_ms, "torch ms": 4.0,
           "jax GFLOP/s": 1e3 / jax_ms, "torch GFLOP/s": 250.0, "torch / jax time": 4.0 / jax_ms}  # fmt: skip
    quiet = {"load_before": [0.5], "load_after": [1.0], "others_share": 0.01}
    return {"config": "tiny", "rows": [row], "quiet": quiet, "invalid": invalid}


def test_the_table_leaves_invalid_runs_out_and_names_them():
    from tools.bench.gemm_shapes import table

    lines = table([("a/run1.json", _payload(2.0, [])), ("a/run2.json", _payload(99.0, ["noisy"]))])
    assert lines[0].startswith("`tiny`, 1 valid runs of 2 (run1.json)")
    # per step: 2 calls x 2 ms for XLA against 2 x 4 ms for PyTorch; the invalid run's 99 ms is out
    assert "| all | 2 | 4 | 4 | 8 |" in lines
    assert (
        lines[-1] == "Runs marked invalid by the tool (not in the figures above): run2.json: noisy."
    )
