"""tools/bench/step_ab.py: variant parsing, the paired per-round comparison and the adoption rule."""

import pytest

from tests.tools.rendered_blocks import assert_block_rendered
from tools.bench.step_ab import (
    TOOL,
    paired_speedup,
    parse_variant,
    rows_of,
    table,
    verdict,
)


def test_variants_parse_to_runtime_overrides():
    assert parse_variant("default") == {}
    assert parse_variant("attention_query_blocks=4, remat_text=dots") == {
        "attention_query_blocks": 4,
        "remat_text": "dots",
    }
    with pytest.raises(ValueError, match="'remat' is not name=value"):
        parse_variant("attention_query_blocks=4,remat")


ROUNDS = [{"a": 2.0, "b": 1.90}, {"a": 2.1, "b": 1.95}, {"a": 2.0, "b": 2.05}, {"a": 1.9, "b": 1.8}]


def test_rows_pair_each_variant_with_the_reference_round_by_round():
    rows = rows_of(["a", "b"], ROUNDS, {"a": [9.0, 8.9, 8.8], "b": [9.0, 8.9, 8.8 + 2e-6]}, 2048)
    a, b = rows
    assert a["step_s"] == 2.0 and a["vs_reference"] == 1.0
    assert b["step_s"] == pytest.approx(1.925) and b["range_s"] == "1.800-2.050"
    assert b["round_wins"] == 3 and b["rounds"] == 4  # round 3 it was slower
    assert b["vs_reference"] == pytest.approx(2.0 / 1.925)
    assert b["max_loss_diff"] == pytest.approx(2e-6, abs=1e-9)
    assert b["tok_s"] == pytest.approx(2048 / 1.925)


@pytest.mark.parametrize(
    "change, want",
    [
        ({}, "no: faster in 3 of 4 rounds"),
        ({"round_wins": 4}, "adopt"),
        ({"round_wins": 4, "vs_reference": 1.01}, "no: under 2% faster"),
        ({"round_wins": 0, "vs_reference": 0.9}, "no: slower than the reference, faster in 0 of 4 rounds"),
        ({"round_wins": 4, "max_loss_diff": 1e-3}, "no: losses differ by 1.0e-03"),
    ],
)  # fmt: skip
def test_a_variant_is_adopted_only_when_faster_in_most_rounds_and_exact(change, want):
    row = {"vs_reference": 1.04, "round_wins": 3, "rounds": 4, "max_loss_diff": 0.0} | change
    assert verdict(row) == want


def test_the_paired_rule_asks_the_bootstrap_interval_to_clear_one():
    ref = [2.0, 2.4, 2.1, 2.3, 2.0, 2.2]
    steady = [x / 1.04 for x in ref]  # 4% faster in every round, however noisy the rounds
    mean, low, high = paired_speedup(ref, steady)
    assert (
        mean == pytest.approx(1.04) and low == pytest.approx(1.04) and high == pytest.approx(1.04)
    )
    mixed = [1.9, 2.5, 2.0, 2.4, 1.9, 2.3]  # as often slower as faster
    _, low, high = paired_speedup(ref, mixed)
    assert low < 1.0 < high
    row = {"vs_reference": 1.04, "round_wins": 6, "rounds": 6, "max_loss_diff": 0.0}
    assert verdict(row | {"paired_ci": [1.01, 1.07]}, "paired") == "adopt"
    assert verdict(row | {"paired_ci": [0.99, 1.07]}, "paired") == "no: paired interval reaches 1"


def test_the_block_names_host_rounds_and_verdicts():
    rows = rows_of(["a", "b"], ROUNDS, {"a": [9.0], "b": [9.0]}, 2048)
    payload = {"config": "small", "rounds": 4, "iters": 3, "rows": rows, "time": "t",
               "per_round_s": ROUNDS, "first_losses": {"a": [9.0], "b": [9.0]},
               "quiet": {"load_before": [1.0], "load_after": [1.5], "others_share": 0.003},
               "machine": {"cpu": {"key": "Some CPU (family 25, model 17), AVX-512"}}}  # fmt: skip
    lines = table(payload, "x.json")
    assert lines[0].startswith("`small` on Some CPU (family 25, model 17), AVX-512, 4 rounds")
    assert lines[-2].startswith("| `a` | 2.000 [1.900-2.100] | 1.000x | - | - |")
    assert "| 3 of 4 | 1.039x [" in lines[-1]
    assert lines[-1].endswith("| 1064 | 0.0e+00 | no: faster in 3 of 4 rounds |")
    paired = table(payload | {"rule": "paired"}, "x.json")
    assert "paired interval above 1" in paired[2] and "paired interval reaches 1" in paired[-1]


@pytest.mark.parametrize(
    "block, name",
    [("step-ab-query-blocks", "step_ab_query_blocks.json"),
     ("step-ab-query-blocks-paired", "step_ab_query_blocks_paired.json"),
     ("step-ab-query-blocks-tiny", "step_ab_query_blocks_tiny.json"),
     ("step-ab-attention-vjp", "step_ab_attention_vjp.json")],
)  # fmt: skip
def test_benchmarks_holds_the_generated_step_ab_blocks(block, name):
    assert_block_rendered(block, name, table, TOOL)
