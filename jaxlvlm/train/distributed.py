"""Multi-host start-up: ``jax.distributed.initialize`` from the config or the environment.

All hosts run the same command. Values left empty in ``config.distributed`` come from the
environment (JAXLVLM_COORDINATOR, JAXLVLM_NUM_PROCESSES, JAXLVLM_PROCESS_ID); on a Cloud TPU pod all
three may stay empty and JAX discovers them itself.
"""

from __future__ import annotations

import logging
import os

import jax


def maybe_initialize(dist_cfg) -> bool:
    """Joins the process group when ``dist_cfg.enabled``; returns whether it did.

    ``cpu_collectives`` ('gloo' or 'mpi') selects the CPU collectives backend for multi-process
    CPU runs; it must be set before the first computation.
    """
    if not dist_cfg.enabled:
        return False
    if dist_cfg.cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", dist_cfg.cpu_collectives)
    address = dist_cfg.coordinator_address or os.environ.get("JAXLVLM_COORDINATOR", "")
    num = dist_cfg.num_processes or int(os.environ.get("JAXLVLM_NUM_PROCESSES", "0"))
    pid = dist_cfg.process_id
    if pid < 0:
        pid = int(os.environ.get("JAXLVLM_PROCESS_ID", "-1"))
    kwargs = {}
    if address:
        kwargs["coordinator_address"] = address
    if num:
        kwargs["num_processes"] = num
    if pid >= 0:
        kwargs["process_id"] = pid
    if address and (not num or pid < 0):
        raise ValueError(
            "config.distributed: a coordinator_address needs num_processes and process_id too "
            "(set them in the config or JAXLVLM_NUM_PROCESSES / JAXLVLM_PROCESS_ID)"
        )
    jax.distributed.initialize(**kwargs)
    logging.info(
        "joined process group: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True
