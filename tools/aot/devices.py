"""Abstract devices of a TPU slice, on any machine with libtpu installed (no TPU needed)."""

from __future__ import annotations

import functools
import os

import jax

from tools.aot.chips import Topology


@functools.lru_cache(maxsize=8)
def topology_devices(topology: Topology) -> tuple[jax.Device, ...]:
    """The slice's devices (one per chip on v5e/v5p/v6e; libtpu lists v4's two cores apiece)."""
    # libtpu takes a machine-wide lock meant for real chips; describing a topology touches none,
    # so two compiles (a test while a recipe compiles) may share the library.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        from jax.experimental import topologies
    except ImportError as e:  # pragma: no cover - jax always ships it
        raise RuntimeError("this jax has no jax.experimental.topologies") from e
    try:
        desc = topologies.get_topology_desc(
            platform="tpu",
            topology_name=topology.libtpu_name,
            chip_config_name="default",
            chips_per_host_bounds=topology.host_bounds,
            num_slices=1,
        )
    except Exception as e:  # noqa: BLE001 - libtpu missing or the name unknown to it
        raise RuntimeError(
            f"cannot describe TPU topology {topology.libtpu_name}: {e}. AOT compiling needs "
            f"libtpu: pip install -e '.[tpu-aot]'"
        ) from e
    return tuple(desc.devices)
