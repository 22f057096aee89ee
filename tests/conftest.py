"""Test session setup: 8 CPU devices and float32 at highest matmul precision.

XLA_FLAGS must be set before jax is imported anywhere, so this runs at conftest import.
"""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# In the environment too, so that the processes a test starts (Flower's sites and server) compute,
# and compile, exactly what this one does.
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")

import jax  # noqa: E402
import pytest  # noqa: E402
from jax.experimental.compilation_cache import compilation_cache  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session", autouse=True)
def compile_cache_for_the_run(tmp_path_factory):
    """One persistent compilation cache per test run, shared by the xdist workers: many tests
    compile the very same programs (the demo model's train step, its evaluation), and every
    compile after the first becomes a load (measured: tests/train/test_phase.py and
    test_checkpoint_faults.py take 85 instead of 158 CPU seconds). It lives in pytest's base
    temporary directory of the run (the workers' common parent under xdist), which pytest prunes.
    JAXLVLM_TEST_COMPILE_CACHE=0 turns it off (to measure it, or to rule it out). Tests that set
    their own cache (the Flower fixtures) restore this one afterwards."""
    if os.environ.get("JAXLVLM_TEST_COMPILE_CACHE", "1") == "0":
        yield None
        return
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    directory = str(root / "jax-compile-cache")
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    compilation_cache.reset_cache()  # in case this process decided on 'no cache' already
    # The same cache for the processes tests start (python -m jaxlvlm.main runs, the multihost
    # workers): JAX reads these at import. A process that sets its own cache (a Flower site, a
    # run's config) still wins over them.
    env = {"JAX_COMPILATION_CACHE_DIR": directory,
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}  # fmt: skip
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield directory
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
