"""Every file in configs/ loads in its test shrink, validates, and builds its model and state layout
(abstractly: eval_shape, no parameter memory); bad configs fail with the key named."""

import glob
import importlib.util
import os

import jax
import pytest

from jaxlvlm.methods.settings import settings_from
from jaxlvlm.runners.registry import available_runners, runner_settings
from jaxlvlm.train import setup as S
from jaxlvlm.train.config_check import ConfigError, validate_config
from jaxlvlm.train.config_schema import base_config, parse_arg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(
    p
    for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    if os.path.basename(p) != "common.py" and not os.path.basename(p).endswith("_common.py")
)


def _load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_config_file_loads_validates_and_builds(path):
    c = _load(path).get_config("test")
    validate_config(c, known_modes=available_runners())
    settings = runner_settings(c.mode)  # the method section maps onto the method's dataclass
    if settings is not None:
        settings_from(settings, c.method)
    from jaxlvlm.data.tokenizer import load_tokenizer

    tok = load_tokenizer(c.tokenizer)
    cfg = S.model_config_from(c, tok)
    model = S.build(cfg, S.runtime_from(c))
    mesh, rules = S.mesh_from_config(c)
    setup = S.plan_train_state(model, cfg, c, mesh, rules)
    n = sum(x.size for x in jax.tree_util.tree_leaves(setup.abstract.params))
    assert n > 0
    assert c.train.steps <= 20, "the test shrink must stay small"


def test_demo_is_listed():
    assert any(p.endswith("demo.py") for p in CONFIG_FILES)


def test_unknown_and_missing_keys_are_named():
    c = base_config()
    c.train.stepz = 3
    del c.optim["lr"]
    c.model.text.hidden_sise = 8
    with pytest.raises(ConfigError) as e:
        validate_config(c)
    msg = str(e.value)
    assert "'train.stepz'" in msg and "'optim.lr'" in msg and "'model.text.hidden_sise'" in msg


def test_bad_values_are_named():
    c = base_config()
    c.mode = "no_such_mode"
    c.mesh.shape = (-1, -1, 1)
    c.data.global_batch_size = 10
    c.train.grad_accum = 3
    c.optim.freeze = ("vision/(",)
    c.lora.enabled = True
    c.lora.targets = ("qq_proj",)
    with pytest.raises(ConfigError) as e:
        validate_config(c, known_modes=available_runners())
    msg = str(e.value)
    for needle in ("no_such_mode", "mesh.shape", "grad_accum=3", "bad regex", "qq_proj"):
        assert needle in msg, needle


def test_method_section_is_free_form():
    c = base_config()
    c.method.anything = 1
    validate_config(c)


def test_parse_arg_types_and_errors():
    a = parse_arg("test,steps=5,lr=0.5,name=x", test=False, steps=1, lr=1.0, name="")
    assert (a.test, a.steps, a.lr, a.name) == (True, 5, 0.5, "x")
    with pytest.raises(ValueError, match="unknown"):
        parse_arg("stepz=3", steps=1)
    with pytest.raises(ValueError, match="needs a value"):
        parse_arg("steps", steps=1)
