"""step_profile's join of XLA thunk times with the optimized HLO, and the BENCHMARKS block."""

import json
import os

import pytest

from tools.bench import step_profile as P
from tools.bench import step_profile_table as T
from tools.method_bench.readme_blocks import markers

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

HLO = """HloModule jit_train_step

%dot_comp (p0: f32[64,32], p1: f32[32,16]) -> f32[64,16] {
  %p0 = f32[64,32]{1,0} parameter(0)
  %p1 = f32[32,16]{1,0} parameter(1)
  ROOT %dot.1 = f32[64,16]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%copy_comp (p0.1: f32[16,64]) -> f32[64,16] {
  %p0.1 = f32[16,64]{1,0} parameter(0)
  %t = f32[64,16]{1,0} transpose(%p0.1), dimensions={1,0}
  ROOT %m = f32[64,16]{1,0} multiply(%t, %t)
}

ENTRY %main (a: f32[64,32], b: f32[32,16], c: f32[16,64]) -> f32[64,16] {
  %a = f32[64,32]{1,0} parameter(0)
  %b = f32[32,16]{1,0} parameter(1)
  %c = f32[16,64]{1,0} parameter(2)
  %ynn_fusion.3 = f32[64,16]{1,0} fusion(%a, %b), kind=kCustom, calls=%dot_comp
  %ynn_fusion.4 = f32[64,16]{1,0} fusion(%a, %b), kind=kCustom, calls=%dot_comp
  ROOT %copy_fusion.7 = f32[64,16]{1,0} fusion(%c), kind=kLoop, calls=%copy_comp
}
"""


def test_dot_fusions_get_their_flops_and_rate_and_others_their_op_mix():
    out = P.hlo_breakdown(HLO, {"ynn_fusion.3": 2.0, "ynn_fusion.4": 2.0, "copy_fusion.7": 1.0})
    flops = 2 * 64 * 16 * 32  # per dot
    assert out["dot_ms"] == 4.0 and out["dot_gflop"] == pytest.approx(2 * flops / 1e9)
    (group,) = out["dots_by_shape"]
    assert group["shapes"] == "[64, 32]x[32, 16]->[64, 16]" and group["count"] == 2
    assert group["gflops"] == pytest.approx(2 * flops / 1e9 / 4e-3)
    (other,) = out["largest_others"]
    assert other[:3] == ["copy_fusion.7", 1.0, "f32[64,16]{1,0}"]
    assert other[3] == {"parameter": 1, "transpose": 1, "multiply": 1}


def test_benchmarks_holds_the_generated_profile_blocks():
    text = open(os.path.join(ROOT, "BENCHMARKS.md")).read()
    # before issue 19's matmul layouts, and the current code on the AVX2 and the Zen 4 hosts
    for block, name in (
        ("step-profile", "small.json"),
        ("step-profile-layouts", "small_layouts.json"),
        ("step-profile-zen4", "small_zen4.json"),
    ):
        with open(os.path.join(ROOT, "bench_results", "step_profile", name)) as f:
            want = "\n".join(T.table(json.load(f)))
        begin, end = markers(block, T.TOOL)
        assert f"{begin}\n{want}\n{end}" in text, (
            f"rerun tools.bench step_profile_table --block {block} --write"
        )
