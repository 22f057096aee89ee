"""CoTBal probe sizes and early stopping per the paper's guidance."""

import pytest

from jaxlvlm.methods.cotbal_probes import (
    ProbeSettings,
    probe_num_samples,
    probe_should_stop,
    probe_step_cap,
)


def test_subset_sizes_have_the_paper_floors_and_the_task_cap():
    s = ProbeSettings()
    assert probe_num_samples(64000, large=False, settings=s) == 2000  # 1/32 of 64k
    assert probe_num_samples(8000, large=False, settings=s) == 1000  # floor 1k
    assert probe_num_samples(500, large=False, settings=s) == 500  # the whole task
    assert probe_num_samples(50000, large=True, settings=ProbeSettings(large_rate=0.25)) == 12500
    assert probe_num_samples(20000, large=True, settings=ProbeSettings(large_rate=0.25)) == 10000


def test_probe_trains_at_least_min_steps_and_until_no_improvement():
    s = ProbeSettings(min_steps=100, max_steps_ratio=0.5, patience=2)
    assert probe_step_cap(1000, s) == 500 and probe_step_cap(50, s) == 100
    assert not probe_should_stop(50, [0.1, 0.1, 0.1], 1000, s)  # below min_steps
    assert not probe_should_stop(150, [0.1, 0.2, 0.3], 1000, s)  # still improving
    assert probe_should_stop(150, [0.1, 0.3, 0.2, 0.3], 1000, s)  # no gain over 0.3 in 2 evals
    assert probe_should_stop(500, [0.1, 0.2, 0.3, 0.4], 1000, s)  # the cap


def test_bad_settings():
    with pytest.raises(ValueError):
        ProbeSettings(mini_rate=0.5, large_rate=0.25)
    with pytest.raises(ValueError):
        ProbeSettings(patience=0)
