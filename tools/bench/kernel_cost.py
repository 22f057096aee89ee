"""What a benchmarked side costs in the kernel: minor page faults and system CPU time per step.

A step whose buffers are mapped afresh every time pays for it in page faults and kernel time that
its own profile does not show (jaxlvlm/host_memory.py). ``KernelCost`` sums both over the blocks of
steps it is wrapped around, from the process's resource usage (so it counts every thread of the
process during the block; the sides of a benchmark run one after the other, never together).
"""

from __future__ import annotations

import contextlib
import resource


class KernelCost:
    """Accumulates minor page faults and system seconds over ``with cost.over(steps):`` blocks."""

    def __init__(self) -> None:
        self.faults = 0
        self.system_s = 0.0
        self.steps = 0

    @contextlib.contextmanager
    def over(self, steps: int):
        before = resource.getrusage(resource.RUSAGE_SELF)
        yield
        after = resource.getrusage(resource.RUSAGE_SELF)
        self.add(after.ru_minflt - before.ru_minflt, after.ru_stime - before.ru_stime, steps)

    def add(self, faults: int, system_s: float, steps: int) -> None:
        """Counts a block measured elsewhere (a worker process reports its own)."""
        self.faults += faults
        self.system_s += system_s
        self.steps += steps

    @property
    def faults_per_step(self) -> float:
        return self.faults / self.steps if self.steps else float("nan")

    @property
    def system_s_per_step(self) -> float:
        return self.system_s / self.steps if self.steps else float("nan")
