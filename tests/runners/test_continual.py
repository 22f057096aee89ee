"""mode 'continual': resume in the middle of a stream, frozen base bitwise unchanged, baselines."""

import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from configs import continual_domain  # noqa: E402
from configs.continual_common import STEPS_PER_TASK  # noqa: E402
from jaxlvlm.methods import prompt_pool as pp  # noqa: E402
from jaxlvlm.methods.continual_llava import training as CL  # noqa: E402
from jaxlvlm.methods.continual_llava.instructions import instruction_texts  # noqa: E402
from jaxlvlm.methods.continual_llava.settings import ContinualSettings  # noqa: E402
from jaxlvlm.methods.settings import settings_from  # noqa: E402
from jaxlvlm.runners import continual  # noqa: E402
from jaxlvlm.train import phase as P  # noqa: E402
from jaxlvlm.train import run_setup as RS  # noqa: E402


def _config(approach="continual_llava", steps=2, embedding="token_mean"):
    c = continual_domain.get_config(f"test,approach={approach},base_steps=0")
    c.method.embedding = embedding
    # Two tasks keep the test small: digits in the plain and the noisy domain.
    c.data.sources = c.data.sources[:2]
    c.data.eval_sources = c.data.eval_sources[:2]
    c.data.tasks = c.data.tasks[:2]
    c.method.stream = c.method.stream[:2]
    c.method.evaluate_base = False
    c.train.steps = steps
    c.train.checkpoint_every = 1
    return c


class _Interrupted(Exception):
    pass


def _interrupting_loop(real_loop, phase_name, after_batches):
    """train_loop whose data stops (like a killed process) after ``after_batches`` batches of the
    phase whose workdir ends in ``phase_name``."""

    def loop(state, step_fn, data_iter, **kw):
        if not kw["checkpointer"].directory.endswith(os.path.join(phase_name, "checkpoints")):
            return real_loop(state, step_fn, data_iter, **kw)

        class Dying:
            n = 0

            def __next__(self):
                if Dying.n == after_batches:
                    raise _Interrupted()
                Dying.n += 1
                return next(data_iter)

            def get_state(self):
                return data_iter.get_state()

        return real_loop(state, step_fn, Dying(), **kw)

    return loop


def _run_capturing(c, root, monkeypatch):
    """Runs the stream and returns (output, {phase dir name: final train state})."""
    states = {}
    real_run_phase = P.run_phase

    def spy(*args, **kwargs):
        res = real_run_phase(*args, **kwargs)
        states[os.path.basename(args[1])] = res.state
        return res

    monkeypatch.setattr(continual, "run_phase", spy)
    try:
        return continual.run_continual(c, root), states
    finally:
        monkeypatch.setattr(continual, "run_phase", real_run_phase)


def _assert_trees_equal(x, y):
    for p, q in zip(
        jax.tree_util.tree_leaves(jax.device_get(x)),
        jax.tree_util.tree_leaves(jax.device_get(y)),
        strict=True,
    ):
        np.testing.assert_array_equal(p, q)


@pytest.mark.slow  # multi-phase run, minutes on 2 cores; run with -m slow
def test_stream_resumes_mid_task_exactly_and_keeps_the_base_frozen(tmp_path, monkeypatch):
    c = _config()
    straight, states_a = _run_capturing(c, str(tmp_path / "a"), monkeypatch)
    s = straight["summary"]
    assert s["frozen_base_unchanged"] is True
    a = np.asarray(s["matrix"])
    assert a.shape == (2, 2) and np.all(np.isfinite(a))

    real = P.train_loop
    monkeypatch.setattr(P, "train_loop", _interrupting_loop(real, "task_1_digits-noisy", 1))
    with pytest.raises(_Interrupted):
        continual.run_continual(c, str(tmp_path / "b"))
    monkeypatch.setattr(P, "train_loop", real)
    assert os.path.exists(tmp_path / "b" / "task_0_digits" / "phase.json")
    assert not os.path.exists(tmp_path / "b" / "task_1_digits-noisy" / "phase.json")
    resumed, states_b = _run_capturing(c, str(tmp_path / "b"), monkeypatch)
    info = P.read_phase(str(tmp_path / "b" / "task_1_digits-noisy"))
    assert info["resumed_from"] == 1
    assert resumed["summary"]["matrix"] == s["matrix"]
    # Pool, memory and the (frozen) model are bitwise those of the uninterrupted stream.
    final_a, final_b = states_a["task_1_digits-noisy"], states_b["task_1_digits-noisy"]
    _assert_trees_equal(final_a.lora, final_b.lora)
    _assert_trees_equal(final_a.method_state, final_b.method_state)
    _assert_trees_equal(final_a.params, final_b.params)


@pytest.mark.slow  # multi-phase run, minutes on 2 cores; run with -m slow
def test_pool_memory_after_stream_by_hand(tmp_path, monkeypatch):
    """After two tasks: two snapshots whose coefficients are the tasks' mean selections (sum 1 each).
    Selection by the frozen MiniLM embedding of the prompt text."""
    c = _config(embedding="minilm")
    out, states = _run_capturing(c, str(tmp_path), monkeypatch)
    st = states["task_1_digits-noisy"]
    mem = jax.device_get(st.method_state)
    assert int(mem["num_done"]) == 2
    np.testing.assert_allclose(mem["snap_alpha"].sum(axis=1), [1.0, 1.0], rtol=1e-5)
    # The summary records each task's selection from these snapshots (top entries by coefficient).
    sel = out["summary"]["pool_selection"]
    for t in range(2):
        dense = np.zeros(c.method.pool_size)
        dense[mem["snap_index"][t]] = mem["snap_alpha"][t]
        np.testing.assert_allclose(sel["mean_coefficient"][t], dense, rtol=1e-6)
        assert set(sel["top_entries"][t]) == set(mem["snap_index"][t][: c.method.top_m].tolist())
    assert float(mem["coeff_count"]) == 0.0
    # Snapshot 1 holds the pool at the end of task 1 (the final live pool), in snap_index order.
    lora = jax.device_get(st.lora)
    np.testing.assert_array_equal(mem["snap_a"][1], lora["a"][:, mem["snap_index"][1]])
    np.testing.assert_array_equal(mem["snap_b"][1], lora["b"][:, mem["snap_index"][1]])
    # The pool learned (b starts at zero) and stage 1 moved the keys away from their init.
    assert np.abs(lora["b"]).max() > 0
    run = RS.prepare_run(c, str(tmp_path))
    cfg0 = CL.pool_config(run.model_cfg, settings_from(ContinualSettings, c.method), 2)
    init = pp.init_pool(jax.random.PRNGKey(c.seed + 1), cfg0)
    assert not np.allclose(lora["keys"], np.asarray(init["keys"]))


def test_instruction_texts_are_the_prompts_without_answers():
    from jaxlvlm.data.pipeline import DataConfig, make_train_iterator
    from jaxlvlm.data.tokenizer import load_tokenizer
    from jaxlvlm.train import setup as S

    c = _config()
    tok = load_tokenizer("builtin")
    model_cfg = S.model_config_from(c, tok)
    from jaxlvlm.data.examples import ImageConfig

    data_cfg = DataConfig.from_dict(c.data)
    it = make_train_iterator(data_cfg, tok, ImageConfig.from_lvlm_config(model_cfg), None, 0)
    batch = next(it)
    texts = instruction_texts(batch, tok, model_cfg.image_token_id)
    assert len(texts) == batch["input_ids"].shape[0]
    from jaxlvlm.data.builtin import make_records

    # The two tasks (plain, noisy digits) ask with their own domain's phrasings.
    records = [
        make_records("digits", "train", 16, 0, domain=d, image_size=16, wording="domain")
        for d in ("plain", "noisy")
    ]
    checked = 0
    for row, text in enumerate(texts):
        if batch["loss_mask"][row].sum() == 0:
            continue
        rec = records[int(batch["task_ids"][row])][int(batch["sample_index"][row])]
        question = rec["conversations"][0]["value"].replace("<image>", "").strip()
        assert question in text, (text, question)
        assert rec["conversations"][1]["value"] not in text.replace(question, ""), text
        checked += 1
    assert checked > 0


@pytest.mark.slow
@pytest.mark.parametrize("approach", ["seq_ft", "seq_lora", "replay", "joint"])
def test_baselines_run(tmp_path, approach):
    c = _config(approach)
    out = continual.run_continual(c, str(tmp_path))
    s = out["summary"]
    if approach == "joint":
        assert len(s["final"]) == 2
    else:
        assert np.asarray(s["matrix"]).shape == (2, 2)
        assert set(s["metrics"]) == {"ACC", "MAA", "F", "BWT", "FWT", "PL"}
    assert os.path.exists(out["report"])


def test_bad_method_settings():
    c = _config()
    c.method.approach = "nope"
    with pytest.raises(ValueError, match="choose one of"):
        settings_from(ContinualSettings, c.method)
    c = _config()
    c.method.stream = ("digits", "counting")
    with pytest.raises(ValueError, match="tasks must be distinct names"):
        continual.stream_of(c, settings_from(ContinualSettings, c.method))
    c = _config()
    c.method.base_lr = -1.0
    with pytest.raises(ValueError, match="base_lr"):
        settings_from(ContinualSettings, c.method)
    c = _config()
    c.method.pool_sise = 3
    with pytest.raises(ValueError, match=r"unknown keys \['pool_sise'\]"):
        settings_from(ContinualSettings, c.method)


def test_stream_configs_carry_the_benchmark_settings():
    """docs/benchmark.md: 300 test samples, the base's early stop, data fixed across run seeds,
    the domain stream's per-domain wording; grounding gets room for its box answer."""
    from configs import continual_capability, continual_dataset
    from jaxlvlm.data.sources import source_from_spec

    c = continual_domain.get_config("approach=seq_ft")
    assert c.method.base_eval_every == 100 and c.method.base_patience == 2
    assert c.method.base_steps == 800 and c.train.steps == STEPS_PER_TASK
    for spec in (*c.data.sources, *c.data.eval_sources, *c.method.base_sources):
        assert spec["seed"] == 0, spec
    assert all(s["num"] == 300 for s in c.data.eval_sources)
    assert {s["wording"] for s in c.data.eval_sources} == {"domain"}
    assert all("wording" not in s for s in c.method.base_sources)  # the base asks as before
    questions = {
        s["task"]: source_from_spec(s, seed=5, image_size=32)[0]["conversations"][0]["value"]
        for s in c.data.eval_sources
    }
    assert len(set(questions.values())) == 4, questions
    shared = continual_domain.get_config("approach=seq_ft,wording=shared")
    assert all("wording" not in s for s in shared.data.eval_sources)
    assert c.eval.max_new_tokens == 6
    d = continual_dataset.get_config("approach=seq_ft")
    assert d.eval.max_new_tokens == 26  # grounding: '[0.12, 0.34, 0.56, 0.78]' is 24 tokens
    with pytest.raises(ValueError, match="'attribute' has no per-domain phrasings"):
        cap = continual_capability.get_config("wording=domain")
        source_from_spec(cap.data.sources[0], seed=0, image_size=32)


def test_every_order_and_approach_of_a_stream_trains_the_identical_base():
    """The reversed order keeps data.tasks canonical, so its base phase config has the domain
    stream's fingerprint (the drift check that guards a shared base would refuse anything else)."""
    from jaxlvlm.train.base_model import base_phase_config
    from jaxlvlm.train.fingerprint import fingerprint

    prints = []
    for arg in ("approach=seq_ft", "approach=continual_llava", "approach=seq_lora,order=1",
                "approach=joint,order=1", "approach=replay,order=2"):  # fmt: skip
        c = continual_domain.get_config(arg)
        s = settings_from(ContinualSettings, c.method)
        assert continual.stream_of(c, s) == list(c.method.stream)
        prints.append(fingerprint(RS.config_json(base_phase_config(c, continual._run_tasks(c), s))))
    assert all(p == prints[0] for p in prints[1:])
    c1 = continual_domain.get_config("order=1")
    assert list(c1.method.stream) == list(reversed(c1.data.tasks))


def test_shared_base_scores_follow_the_runs_task_order(tmp_path):
    from jaxlvlm.files import write_json_atomic
    from jaxlvlm.train.base_model import base_scores

    c = _config()
    s = settings_from(ContinualSettings, dict(c.method, evaluate_base=True))
    write_json_atomic(
        tmp_path / "base_scores.json", {"tasks": ["a", "b", "c"], "scores": [1, 2, 3]}
    )
    np.testing.assert_array_equal(
        base_scores(c, str(tmp_path), ["c", "a", "b"], None, s), [3, 1, 2]
    )
    with pytest.raises(ValueError, match="base scores of tasks"):
        base_scores(c, str(tmp_path), ["a", "b", "d"], None, s)


def test_selection_record_reads_the_tasks_snapshots():
    """Per finished task: its mean selection coefficient per entry and its top-M entries."""
    cfg = pp.PoolConfig(pool_size=5, top_m=2, rank=1, embed_dim=3, num_layers=1, d_in=2, d_out=2,
                        max_tasks=3)  # fmt: skip
    pool = pp.init_pool(jax.random.PRNGKey(0), cfg)
    mem = pp.init_memory(cfg)
    # Task 0 selects entries 1 and 3 (weights 0.7 / 0.3 on both rows); task 1 entries 3 and 4.
    c0 = np.zeros((2, 5), np.float32)
    c0[:, 1], c0[:, 3] = 0.7, 0.3
    mem = pp.end_of_task_snapshot(pool, pp.accumulate_coefficients(mem, c0), cfg)
    c1 = np.zeros((2, 5), np.float32)
    c1[:, 4], c1[:, 3] = 0.6, 0.4
    mem = pp.end_of_task_snapshot(pool, pp.accumulate_coefficients(mem, c1), cfg)
    rec = CL.selection_record(mem, ["t0", "t1"], top_m=2)
    assert rec["pool_size"] == 5 and rec["top_m"] == 2 and rec["kept_entries"] == 5
    assert rec["top_entries"] == [[1, 3], [4, 3]]
    np.testing.assert_allclose(rec["mean_coefficient"], [[0, 0.7, 0, 0.3, 0], [0, 0, 0, 0.4, 0.6]],
                               atol=1e-6)  # fmt: skip
    with pytest.raises(ValueError, match="holds 2 finished tasks, expected 3"):
        CL.selection_record(mem, ["t0", "t1", "t2"], top_m=2)
