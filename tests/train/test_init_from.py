"""init_from: a converted checkpoint (jaxlvlm.convert.save_converted) seeds the train state."""

import jax
import numpy as np
import pytest

from jaxlvlm.convert import save_converted
from jaxlvlm.models.config import lvlm_config_from_dict
from jaxlvlm.train import setup as S
from jaxlvlm.train.checkpoint import Checkpointer
from jaxlvlm.train.phase import start_state
from jaxlvlm.train.run_setup import prepare_run
from tests.train.fixtures import tiny_config


def test_init_from_converted_checkpoint(tmp_path):
    c = tiny_config()
    cfg = lvlm_config_from_dict(c.model.to_dict())
    model = S.build(cfg, S.runtime_from(c))
    params = jax.device_get(model.init(jax.random.PRNGKey(7), **S.dummy_inputs(cfg))["params"])
    params = jax.tree_util.tree_map(
        lambda x: getattr(x, "value", x), params, is_leaf=lambda x: hasattr(x, "value")
    )
    save_converted(str(tmp_path / "conv"), cfg, params)

    c.init_from = str(tmp_path / "conv")
    c.model.text.hidden_size = 999  # ignored: the architecture comes from the checkpoint
    run = prepare_run(c, str(tmp_path / "wd"))
    assert run.model_cfg == cfg
    setup = S.plan_train_state(run.model, run.model_cfg, c, run.mesh, run.rules)
    state = start_state(run, setup, Checkpointer(str(tmp_path / "wd")))
    got = dict(jax.tree_util.tree_leaves_with_path(state.params))
    shardings = dict(jax.tree_util.tree_leaves_with_path(setup.param_shardings))
    for path, want in jax.tree_util.tree_leaves_with_path(params):
        np.testing.assert_array_equal(np.asarray(got[path]), want)
        # Restored straight into the planned sharding (born sharded, never gathered).
        assert got[path].sharding.spec == shardings[path].spec


def test_init_from_missing_dir_is_named(tmp_path):
    c = tiny_config()
    c.init_from = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="model_config.json"):
        prepare_run(c, str(tmp_path / "wd"))
