"""mode 'continual': resume in the middle of a stream, frozen base bitwise unchanged, baselines."""

import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from configs import continual_domain  # noqa: E402
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
    _, states = _run_capturing(c, str(tmp_path), monkeypatch)
    st = states["task_1_digits-noisy"]
    mem = jax.device_get(st.method_state)
    assert int(mem["num_done"]) == 2
    np.testing.assert_allclose(mem["snap_alpha"].sum(axis=1), [1.0, 1.0], rtol=1e-5)
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

    records = make_records("digits", "train", 16, 0, domain="plain", image_size=16)
    checked = 0
    for row, text in enumerate(texts):
        if batch["loss_mask"][row].sum() == 0:
            continue
        rec = records[int(batch["sample_index"][row])]
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
