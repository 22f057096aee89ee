"""The persistent compilation cache of the Flower processes (sites and server)."""

from __future__ import annotations

import jax


def use_compilation_cache(directory: str) -> None:
    """Compiled programs persist in ``directory``: a restarted site or server process, and the
    other processes on this machine given the same directory, load them instead of compiling.
    Call it before the process compiles anything."""
    jax.config.update("jax_compilation_cache_dir", directory)
    # Every program, however small or quick to compile: a federation's programs are few and all
    # reused (-1: no size threshold, and none that a backend default could set either).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
