"""Host memory on CPU runs (jaxlvlm/host_memory.py): when the allocator settings apply, and that
they stop a jitted step's temporary buffer from being page-faulted in again on every call."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from jaxlvlm import host_memory

# Runs a jitted function with 64 MB buffers (over glibc's largest mmap threshold, 32 MB) five times
# and prints the minor page faults of the last three calls (the first two compile and allocate).
_PROBE = textwrap.dedent(
    """
    import resource, sys
    from jaxlvlm.host_memory import keep_freed_host_memory
    print("status:", keep_freed_host_memory())
    import jax, jax.numpy as jnp
    a, b = jnp.ones((4096, 64), jnp.float32), jnp.ones((64, 4096), jnp.float32)
    c = jnp.ones((4096, 8), jnp.float32)
    # The [4096, 4096] product (64 MB) is a temporary buffer: the second product reads it whole.
    f = jax.jit(lambda a, b, c: jnp.sum(jnp.tanh(a @ b) @ c))
    for _ in range(2):
        f(a, b, c).block_until_ready()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        f(a, b, c).block_until_ready()
    print("faults per call:", (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
    print("result:", f(a, b, c).item().hex())
    """
)


def _probe(env_value: str) -> tuple[str, float, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", **{host_memory.ENV: env_value})
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout
    status = next(x for x in out.splitlines() if x.startswith("status:")).split(": ", 1)[1]
    faults = float(next(x for x in out.splitlines() if x.startswith("faults")).split(": ")[1])
    result = next(x for x in out.splitlines() if x.startswith("result:")).split(": ", 1)[1]
    return status, faults, result


def test_on_by_default_and_off_when_asked(monkeypatch):
    monkeypatch.delenv(host_memory.ENV, raising=False)
    assert host_memory.DEFAULT == "1"
    monkeypatch.setenv(host_memory.ENV, "0")
    assert host_memory.keep_freed_host_memory() == f"off ({host_memory.ENV}=0)"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt (Linux)")
def test_kept_memory_is_not_faulted_in_again_each_call():
    status_on, faults_on, result_on = _probe("1")
    status_off, faults_off, result_off = _probe("0")
    assert status_on == "applied"
    assert status_off == f"off ({host_memory.ENV}=0)"
    # Without the settings each call maps its 64 MB buffers afresh (thousands of 4 KiB pages);
    # with them the pages of the first calls are reused.
    assert faults_off > 10_000, faults_off
    assert faults_on < faults_off / 20, (faults_on, faults_off)
    # Where the buffers live does not touch the arithmetic: the same result to the last bit.
    assert result_on == result_off


@pytest.mark.parametrize(
    "platforms,expected",
    [("cpu", True), ("cuda", False), ("cpu,cuda", False), ("tpu", False), (" cpu ", True)],
)
def test_jax_platforms_decides_when_set(platforms, expected):
    assert host_memory.cpu_backend_expected(platforms) is expected


def test_the_setting_is_read_from_the_environment(monkeypatch):
    import jax

    if jax.config.jax_platforms:  # an explicit jax_platforms option outranks the environment
        assert host_memory.configured_platforms() == jax.config.jax_platforms
    else:
        monkeypatch.setenv("JAX_PLATFORMS", "cuda")
        assert host_memory.configured_platforms() == "cuda"


def test_an_accelerator_counts_only_with_its_device(monkeypatch, tmp_path):
    device = tmp_path / "accel0"
    # 'json' stands in for an installed plugin package.
    monkeypatch.setattr(host_memory, "ACCELERATORS", (("json", (str(device),)),))
    assert host_memory.cpu_backend_expected("") is True  # plugin, no device: libtpu for AOT only
    device.write_text("")
    assert host_memory.cpu_backend_expected("") is False
    monkeypatch.setattr(host_memory, "ACCELERATORS", (("no_such_plugin_pkg", (str(device),)),))
    assert host_memory.cpu_backend_expected("") is True


def test_refuses_once_the_backend_has_started(monkeypatch):
    import jax

    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv(host_memory.ENV, "1")
    jax.devices()  # this test process's backend is up: its threads already have their arenas
    result = host_memory.keep_freed_host_memory()
    assert result.startswith("JAX backend already started")
    assert host_memory.status() == result
