"""The method benchmark's cells: the continual comparisons' commands and the shared base."""

import json
import os

import pytest

from configs.continual_common import STREAM_STEPS_PER_TASK
from tools.method_bench import __main__ as bench
from tools.method_bench.cells import BASE_SHARED, COMPARISONS


def test_continual_comparisons_have_the_benchmarks_cells():
    """docs/benchmark.md: five approaches on three streams, three on the reversed domain order,
    seq_ft first (it trains the seed's base; its seed 0 is the sizing cell)."""
    for stream in ("domain", "capability", "dataset"):
        comp = COMPARISONS[f"continual_{stream}"]
        assert comp.config == f"configs/continual_{stream}.py"
        assert comp.cell_names == ["seq_ft", "seq_lora", "continual_llava", "replay", "joint"]
        assert comp.shared == BASE_SHARED and comp.base_from == ""
    order1 = COMPARISONS["continual_domain_order1"]
    assert order1.config == "configs/continual_domain.py" and "order=1" in order1.args
    assert order1.cell_names == ["seq_ft", "seq_lora", "continual_llava"]
    assert order1.base_from == "continual_domain"
    cmd = bench.command(COMPARISONS["continual_dataset"], "replay", 2, "/runs")
    arg = cmd[cmd.index("--config") + 1]
    assert arg == (
        f"configs/continual_dataset.py:steps={STREAM_STEPS_PER_TASK['dataset']},eval_num=300,base_steps=800,"
        "base_eval_every=100,approach=replay"
    )
    assert cmd[-1] == "--config.seed=2" and cmd[cmd.index("--workdir") + 1] == os.path.join(
        "/runs", "continual_dataset", "replay", "seed2"
    )


@pytest.mark.parametrize("name", [c for c in COMPARISONS if c.startswith("continual_")])
def test_every_continual_cell_config_loads(name):
    """Each cell's colon arguments are ones its config knows (a typo would fail only when run)."""
    import importlib

    comp = COMPARISONS[name]
    module = importlib.import_module(comp.config[: -len(".py")].replace("/", "."))
    for cell in comp.cells:
        c = module.get_config(",".join([comp.args, cell.args]))
        stream = comp.config[len("configs/continual_") : -len(".py")]
        assert c.method.approach == cell.name
        # The cell's steps are its stream config's own default (python -m jaxlvlm.main with the
        # config alone trains what the benchmark trains).
        assert c.train.steps == STREAM_STEPS_PER_TASK[stream] == module.get_config().train.steps


def _fake_base(workdir, tag):
    os.makedirs(os.path.join(workdir, "base"), exist_ok=True)
    with open(os.path.join(workdir, "base", "phase.json"), "w") as f:
        json.dump({"steps": 100, "tag": tag}, f)
    with open(os.path.join(workdir, "base_scores.json"), "w") as f:
        json.dump({"tasks": ["a"], "scores": [1.0]}, f)


def test_the_reversed_order_takes_the_domain_streams_base_of_the_same_seed(tmp_path):
    out = str(tmp_path)
    order1 = COMPARISONS["continual_domain_order1"]
    # Nothing trained yet: nothing to copy.
    assert bench.share_base(order1, out, "seq_lora", 0) == ([], None)
    _fake_base(bench.cell_dir(out, "continual_domain", "joint", 0), "domain seed 0")
    _fake_base(bench.cell_dir(out, "continual_domain", "joint", 1), "domain seed 1")
    copied, source = bench.share_base(order1, out, "seq_lora", 0)
    assert sorted(copied) == ["base", "base_scores.json"]
    assert source == os.path.join("continual_domain", "joint", "seed0")
    dest = bench.cell_dir(out, "continual_domain_order1", "seq_lora", 0)
    with open(os.path.join(dest, "base", "phase.json")) as f:
        assert json.load(f)["tag"] == "domain seed 0"
    # A cell of its own comparison is preferred once one has a base.
    _fake_base(bench.cell_dir(out, "continual_domain_order1", "seq_ft", 1), "order1 seed 1")
    bench.share_base(order1, out, "continual_llava", 1)
    path = bench.cell_dir(out, "continual_domain_order1", "continual_llava", 1)
    with open(os.path.join(path, "base", "phase.json")) as f:
        assert json.load(f)["tag"] == "order1 seed 1"
    # Other comparisons never look outside themselves.
    assert bench.share_base(COMPARISONS["continual_capability"], out, "seq_ft", 0) == ([], None)


def _fake_finished(workdir, tag):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump({"tag": tag}, f)
    with open(os.path.join(workdir, "cell.json"), "w") as f:
        json.dump({"tag": tag, "commit": "abc"}, f)


def test_cells_collected_in_a_committed_tree_count_as_finished(tmp_path):
    out, committed = str(tmp_path / "runs"), str(tmp_path / "committed")
    lifelong = COMPARISONS["lifelong"]
    # Nothing finished anywhere: a dry run lists the command, a dependent cell refuses to start.
    assert bench.run_cell(lifelong, "joint", 0, out, dry_run=True, finished_in=committed)["dry_run"]
    with pytest.raises(RuntimeError, match="needs cell joint of the same seed first"):
        bench.run_cell(lifelong, "random", 0, out, finished_in=committed)
    # The joint cell of seed 0 was collected in an earlier session: it is finished, and the cells
    # that need it may run; seed 1's joint cell was not.
    _fake_finished(bench.cell_dir(committed, "lifelong", "joint", 0), "earlier session")
    rec = bench.run_cell(lifelong, "joint", 0, out, finished_in=committed)
    assert rec["skipped"] and rec["tag"] == "earlier session"
    assert rec["finished_at"] == bench.cell_dir(committed, "lifelong", "joint", 0)
    random_cell = bench.run_cell(lifelong, "random", 0, out, dry_run=True, finished_in=committed)
    assert random_cell["dry_run"]
    assert bench.finished_record(lifelong, "joint", 1, out, committed) is None
    # Without --finished_in the committed tree is not looked at.
    assert bench.finished_record(lifelong, "joint", 0, out) is None
    # A cell finished in this session's runs is found there first.
    _fake_finished(bench.cell_dir(out, "lifelong", "joint", 0), "this session")
    assert bench.finished_record(lifelong, "joint", 0, out, committed)["tag"] == "this session"
    # A summary without its record is not a benchmark cell: said, not skipped silently.
    os.remove(os.path.join(bench.cell_dir(committed, "lifelong", "joint", 0), "cell.json"))
    with pytest.raises(FileNotFoundError, match="no cell.json"):
        bench.finished_record(lifelong, "joint", 0, str(tmp_path / "empty"), committed)


def test_the_command_line_reports_cells_finished_in_the_committed_tree(tmp_path, capsys):
    out, committed = str(tmp_path / "runs"), str(tmp_path / "committed")
    _fake_finished(bench.cell_dir(committed, "lifelong", "joint", 2), "earlier session")
    bench.main(["--comparison", "lifelong", "--out", out, "--seeds", "2",
                "--cells", "joint,random", "--finished_in", committed, "--dry_run"])  # fmt: skip
    first, second = capsys.readouterr().out.strip().splitlines()
    assert json.loads(first)["skipped"] is True
    assert "approach=random" in json.loads(second) and "--config.seed=2" in json.loads(second)
