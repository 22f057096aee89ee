"""tools.aot: the demo model's train step compiled for a 4-chip TPU v5e slice on this CPU machine
(libtpu, the tpu-aot extra), with its memory and FLOPs reported; topology names; the collective
and out-of-HBM parsers."""

from __future__ import annotations

import importlib.util

import pytest

from tools.aot.analysis import parse_hbm_oom
from tools.aot.chips import GB, parse_topology
from tools.aot.hlo_collectives import collective_stats
from tools.aot.sweep import parse_variant, rank

needs_libtpu = pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None,
    reason="libtpu not installed: pip install -e '.[tpu-aot]'",
)


def test_topology_names_follow_cloud_tpu_accelerator_types():
    v5p = parse_topology("v5p-128")  # counts TensorCores: 64 chips
    assert (v5p.libtpu_name, v5p.num_chips) == ("v5p:4x4x4", 64)
    v5e = parse_topology("v5e-8")  # counts chips
    assert (v5e.libtpu_name, v5e.num_chips, v5e.chip.hbm_bytes) == ("v5e:2x4", 8, 16 * GB)
    assert parse_topology("v6e:8x8").num_chips == 64
    with pytest.raises(ValueError, match="v5p-128"):
        parse_topology("v5p-100")
    with pytest.raises(ValueError, match="not in the chip table"):
        parse_topology("v9-8")


def test_out_of_hbm_error_is_parsed_to_bytes():
    msg = (
        "RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
        "temporaries (1.5T) exceeds available HBM (95.74G)."
    )
    oom = parse_hbm_oom(msg)
    assert oom["what"] == "HLO temporaries"
    assert oom["required_bytes"] == pytest.approx(1.5 * 2**40)
    assert oom["available_bytes"] == pytest.approx(95.74 * 2**30)
    assert parse_hbm_oom("INVALID_ARGUMENT: something else") is None


def test_collectives_in_a_loop_body_count_per_iteration():
    hlo = """HloModule m

%body (p: (s32[], f32[8])) -> (s32[], f32[8]) {
  %p = (s32[], f32[8]) parameter(0)
  %x = f32[8]{0} get-tuple-element(%p), index=1
  %ar = f32[8]{0} all-reduce(%x), replica_groups={}, to_apply=%add
  ROOT %t = (s32[], f32[8]) tuple(%i, %ar)
}

ENTRY %main (a: f32[8]) -> f32[32] {
  %a = f32[8]{0} parameter(0)
  %w = (s32[], f32[8]) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"5"}}
  ROOT %ag = f32[32]{0} all-gather(%a), dimensions={0}
}
"""
    stats = collective_stats(hlo)
    assert stats["all-reduce"] == {"count": 5, "bytes": 5 * 32.0}
    assert stats["all-gather"] == {"count": 1, "bytes": 128.0}
    assert stats["reduce-scatter"]["count"] == 0


def test_sweep_variants_parse_to_config_overrides_and_rank_fitting_first():
    label, flags = parse_variant("mesh1x8x2 mesh.shape=(1,8,2) runtime.remat_text=dots")
    assert label == "mesh1x8x2"
    assert flags == ["--config.mesh.shape=(1,8,2)", "--config.runtime.remat_text=dots"]
    with pytest.raises(ValueError, match="key=value"):
        parse_variant("bad mesh.shape")

    def report(fits, mfu):
        return {"programs": [{"memory": {"fits": fits}, "estimated_mfu": mfu}]}

    reports = {
        "a": report(True, 0.30),
        "big": report(False, None),
        "b": report(True, 0.41),
        "c": report(True, None),
        "d": report(False, 0.9),  # a high estimate that does not fit ranks after every fitting one
    }
    assert [t[0] for t in rank(reports)] == ["b", "a", "c", "d", "big"]


@needs_libtpu
def test_demo_train_step_compiles_for_v5e_4_and_reports_memory_and_flops():
    from configs.demo import get_config
    from tools.aot.run import compile_recipe

    config = get_config("test")
    config.mesh.shape = (1, -1, 1)
    report = compile_recipe(config, "configs/demo.py", "v5e-4", ["train_step"])
    assert (report["libtpu_topology"], report["devices"]) == ("v5e:2x2", 4)
    (entry,) = report["programs"]
    mem = entry["memory"]
    assert mem["argument_bytes"] > 0 and mem["total_bytes"] > 0
    assert mem["fits"] and mem["margin_bytes"] == mem["hbm_bytes"] - mem["total_bytes"]
    assert mem["hbm_bytes"] == 16 * GB
    # The project's FLOP count and XLA's agree within the uncounted work (norms, softmax, optimizer).
    assert entry["model_flops_per_device"] > 0
    assert 0.5 < entry["xla_flops_per_device"] / entry["model_flops_per_device"] < 3.0
    assert entry["collectives"]["all-gather"]["count"] > 0  # parameters are fsdp-sharded


def test_before_after_table_matches_recipe_files_and_programs(tmp_path):
    import json

    from tools.aot.table import GIB, comparison

    def report(total_gib, fits, mfu, all_reduce_gib, programs=("train_step",)):
        coll = {"all-reduce": {"count": 3, "bytes": all_reduce_gib * GIB}} if fits else {}
        entry = {"memory": {"total_bytes": total_gib * GIB, "fits": fits}, "estimated_mfu": mfu}
        return {
            "recipe": "r",
            "mesh": {"data": 1, "fsdp": 8, "tensor": 1},
            "programs": [{"program": p, "collectives": coll, **entry} for p in programs],
        }

    legacy, now = tmp_path / "legacy", tmp_path / "now"
    legacy.mkdir(), now.mkdir()
    (legacy / "r__v5p-16.json").write_text(json.dumps(report(120.0, False, None, 0)))
    (now / "r__v5p-16.json").write_text(json.dumps(report(40.0, True, 0.5, 2, ("train_step", "x"))))
    (legacy / "gone__v5p-8.json").write_text(json.dumps(report(1.0, True, 0.1, 1)))
    lines = comparison(str(now), str(legacy)).splitlines()
    # Header, separator and the one program found in both; 'gone' has no current compile.
    assert lines[2:] == [
        "| r | train_step | 1x8x1 -> 1x8x1 | 120.0 (no fit) -> 40.0 | n/a -> 50.0% | n/a -> 2 "
        "| n/a -> 0 |"
    ]
