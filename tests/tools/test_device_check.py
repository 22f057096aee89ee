"""tools/bench/device_check.sh's CPU path (DEVICE_CHECK_SIZE=tiny): the script a GPU session runs
in one call measures a train step, its MFU and a decode step, and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess

import pytest


@pytest.mark.slow
def test_device_check_tiny_on_cpu(tmp_path):
    out = tmp_path / "device_check.json"
    env = dict(os.environ, DEVICE_CHECK_SIZE="tiny", DEVICE_CHECK_OUT=str(out), JAX_PLATFORMS="cpu")
    subprocess.run(["bash", "tools/bench/device_check.sh"], check=True, env=env, timeout=600)
    result = json.loads(out.read_text())
    assert result["size"] == "tiny" and result["batch"] in (8, 4)
    assert result["step_s_median"] > 0 and result["tokens_per_s"] > 0
    assert 0 < result["mfu"] < 1
    assert result["decode_step_ms"] >= 0
