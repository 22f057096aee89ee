"""mode 'lifelong' end to end (slow): the stream, its selections, and a rerun that retrains nothing."""

import numpy as np
import pytest

from jaxlvlm.runners import lifelong


@pytest.mark.slow
@pytest.mark.parametrize("approach", ["adapt_inf", "random"])
def test_lifelong_stream_end_to_end_and_resume(tmp_path, approach):
    from configs.lifelong_builtin import get_config

    config = get_config(f"test,approach={approach}")
    out = lifelong.run_lifelong(config, str(tmp_path))
    s = out["summary"]
    assert np.asarray(s["matrix"]).shape == (2, 4)
    for st in s["steps"]:
        assert st["selected"] == config.method.budget
        assert st["pool_after"] <= 4 * config.method.budget
        assert sum(st["pool_after_per_task"].values()) == st["pool_after"]
    assert s["steps"][1]["pool_before"] == 64 and s["steps"][1]["pool_after"] == 32
    again = lifelong.run_lifelong(config, str(tmp_path))[
        "summary"
    ]  # every step complete: nothing retrains
    assert again["matrix"] == s["matrix"]
