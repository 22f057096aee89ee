"""Keep freed host memory in the process on CPU runs, so XLA's per-step buffers are not page-faulted
in again every step.

XLA's CPU client allocates each execution's temporary buffer afresh (``posix_memalign``; 960 MB for
the small bench step) from a worker thread. glibc serves a request that large from its own ``mmap``
and returns it to the kernel on free, so every step maps the buffer again and faults in each 4 KiB
page, which the kernel zeroes first: 250,000 minor faults and about 0.5 s of system CPU time per
step of the small bench train step (2 s on two cores) were measured; PyTorch's step took 77,000-
127,000 (BENCHMARKS.md, question 12).

``keep_freed_host_memory`` sets glibc's allocator, through ``mallopt``, to (1) one arena for every
thread, (2) never ``mmap`` an allocation and (3) never trim the heap. Large buffers then come from
the main heap and stay there after free, so the next step reuses the same pages. The price: the
process keeps its peak host memory until it exits, and threads share one allocator lock. Both are
why it is applied only when the JAX backend will be the CPU, and why it must run before JAX starts
its backend (threads that have already allocated keep their own arenas). ``python -m jaxlvlm.main``
calls it first; code that drives jaxlvlm itself can call it before its first JAX computation.
``JAXLVLM_KEEP_HOST_MEMORY=0`` turns it off (it is on by default: DEFAULT below says why).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import logging
import os
import sys

ENV = "JAXLVLM_KEEP_HOST_MEMORY"
# On by default on CPU runs: the small CPU train step ran 1.084x faster with it, paired speed-up
# 1.112x [1.072, 1.181] over 10 rounds of separate processes (BENCHMARKS.md, question 13).
DEFAULT = "1"
# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
# With JAX_PLATFORMS unset, JAX takes an accelerator when its plugin is installed and the device is
# there: (plugin package, device files any of which marks the device).
ACCELERATORS = (
    ("jax_cuda12_plugin", ("/dev/nvidia0", "/dev/nvidiactl")),
    ("jax_cuda13_plugin", ("/dev/nvidia0", "/dev/nvidiactl")),
    ("jax_rocm_plugin", ("/dev/kfd",)),
    ("jax_rocm7_plugin", ("/dev/kfd",)),
    ("libtpu", ("/dev/accel0", "/dev/vfio/0")),
)

_log = logging.getLogger(__name__)
_status = "not requested in this process"


def configured_platforms() -> str:
    """JAX's platform setting as it stands: the jax_platforms option, else JAX_PLATFORMS, else ''."""
    if "jax" in sys.modules and sys.modules["jax"].config.jax_platforms:
        return sys.modules["jax"].config.jax_platforms
    return os.environ.get("JAX_PLATFORMS", "")


def cpu_backend_expected(platforms: str | None = None) -> bool:
    """Whether JAX will run on the CPU: ``platforms`` (default: configured_platforms()) names only
    'cpu', or it is empty and no accelerator has both its plugin installed and its device present
    (libtpu alone, installed to compile for TPU topologies, does not count). Decided without
    starting a backend."""
    if platforms is None:
        platforms = configured_platforms()
    if platforms.strip():
        return {p.strip() for p in platforms.split(",") if p.strip()} == {"cpu"}
    return not any(
        importlib.util.find_spec(package) and any(os.path.exists(f) for f in device_files)
        for package, device_files in ACCELERATORS
    )


def _backends_started() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def status() -> str:
    """What the last keep_freed_host_memory() call in this process did (for result files)."""
    return _status


def keep_freed_host_memory() -> str:
    """Applies the allocator settings above when they apply; returns what was done, for the log:
    'applied', or why not ('off (...)', 'not a CPU run ...', 'not glibc ...', 'JAX backend already
    started ...')."""
    global _status
    _status = _decide_and_apply()
    return _status


def _decide_and_apply() -> str:
    setting = os.environ.get(ENV, DEFAULT)
    if setting != "1":
        return f"off ({ENV}={setting})"
    if not sys.platform.startswith("linux"):
        return "not Linux (glibc's mallopt only)"
    if not cpu_backend_expected():
        return "not a CPU run (JAX_PLATFORMS or an installed accelerator plugin)"
    if _backends_started():
        return (
            "JAX backend already started: its threads keep their allocator arenas; call "
            "keep_freed_host_memory() before the first JAX computation"
        )
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl has mallopt as a no-op)
    except (OSError, AttributeError, TypeError):
        return f"not glibc ({libc_name})"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # mallopt returns 1 on success. -1 as the trim threshold is SIZE_MAX to glibc: never trim.
    results = [mallopt(M_ARENA_MAX, 1), mallopt(M_MMAP_MAX, 0), mallopt(M_TRIM_THRESHOLD, -1)]
    if results != [1, 1, 1]:
        return f"mallopt refused a setting (results {results})"
    _log.info("host memory: freed buffers stay in the process (CPU run; %s=0 turns it off)", ENV)
    return "applied"
