"""The plateau rule and the base model's validation settings."""

import pytest

from jaxlvlm.errors import ConfigError
from jaxlvlm.methods.settings import BaseModelSettings
from jaxlvlm.train.early_stop import stopped_improving


def test_plateau_rule():
    assert not stopped_improving([0.1, 0.2], patience=2)  # too few scores to judge
    assert not stopped_improving([0.1, 0.2, 0.3], patience=2)
    assert stopped_improving([0.3, 0.2, 0.3], patience=2)  # ties do not count as improving
    assert not stopped_improving([0.3, 0.2, 0.31], patience=2)
    assert stopped_improving([0.3, 0.2, 0.31], patience=2, min_delta=0.05)
    with pytest.raises(ValueError, match="patience"):
        stopped_improving([1.0, 2.0], patience=0)


def test_base_validation_derives_the_val_split_or_is_refused():
    src = (dict(type="builtin", family="counting", split="train", num=500, task="counting"),)
    s = BaseModelSettings(base_steps=10, base_sources=src, base_eval_every=5, base_val_num=64)
    assert s.base_validation() == (dict(src[0], split="val", num=64),)
    s.check_base()
    tfds = (dict(type="tfds", name="x", split="train", task="x"),)
    with pytest.raises(ConfigError, match="base_val_sources"):
        BaseModelSettings(base_steps=10, base_sources=tfds, base_eval_every=5).check_base()
    ok = BaseModelSettings(
        base_steps=10, base_sources=tfds, base_eval_every=5, base_val_sources=src
    )
    ok.check_base()
    assert ok.base_validation() == src
