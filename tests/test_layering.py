"""The layering contracts of pyproject.toml hold (lint-imports), and they bite: a copy of the
package with one import that crosses a layer fails, naming the contract and the import."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lint(root: str, pythonpath: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=pythonpath)
    exe = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    return subprocess.run(
        [exe, "--config", os.path.join(root, "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_contracts_hold():
    proc = _lint(ROOT, ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_a_layer_crossing_import_is_caught(tmp_path):
    shutil.copytree(
        os.path.join(ROOT, "jaxlvlm"),
        tmp_path / "jaxlvlm",
        ignore=shutil.ignore_patterns("__pycache__", "assets"),
    )
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp_path / "pyproject.toml")
    # The model layer reaching up into the train step: what the contracts exist to stop.
    bad = tmp_path / "jaxlvlm" / "models" / "activations.py"
    bad.write_text(bad.read_text() + "\nfrom jaxlvlm.train import step  # noqa: E402,F401\n")
    proc = _lint(str(tmp_path), str(tmp_path))
    assert proc.returncode != 0
    assert "models depend on sharding only BROKEN" in proc.stdout
    assert "jaxlvlm.models.activations -> jaxlvlm.train.step" in proc.stdout
