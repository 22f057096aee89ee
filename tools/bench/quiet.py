"""Was the machine quiet while a benchmark ran? Measured, not assumed.

``OthersMonitor`` reads /proc/stat (every CPU's busy time) and this process's own CPU time
(``os.times``: all its threads, PyTorch's and XLA's pools included) at start and stop; the
difference is what other processes used, as a share of the machine (1.0 = every core busy), plus
the hypervisor's steal share. A ratio taken while others used the cores measures contention, not
the frameworks (BENCHMARKS.md section 1), so the tools mark such a run invalid.
"""

from __future__ import annotations

import dataclasses
import os
import time

from tools.bench.host import cpu_identity

# A run is valid only if other processes used at most this share of the machine's CPU time and
# the hypervisor stole at most STEAL_MAX; and each side's per-iteration times spread (max - min
# over median) at most SPREAD_MAX.
OTHERS_MAX = 0.10
STEAL_MAX = 0.05
SPREAD_MAX = 0.20


def _proc_stat() -> tuple[float, float, float]:
    """(busy, steal, total) CPU seconds of the whole machine since boot, or NaNs without /proc."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except OSError:
        return float("nan"), float("nan"), float("nan")
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0.0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return busy / hz, steal / hz, (busy + idle + iowait + steal) / hz


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def process_cpu(pid: int) -> float:
    """User + system CPU seconds a live process has used (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        # Fields after the command name (which may hold spaces, so split after its ')'): state is
        # the first, utime and stime the 12th and 13th.
        fields = f.read().rsplit(")", 1)[1].split()
    return (float(fields[11]) + float(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class OthersMonitor:
    """with OthersMonitor(helpers=(pid,)) as m: ...; then m.result() -> {'others_share', ...}.

    ``helpers``: the pids of live processes the benchmark itself runs (a PyTorch worker,
    tools/bench/torch_worker.py); their CPU time counts as the benchmark's own, not others'.
    """

    start: tuple = ()
    stop: tuple = ()
    helpers: tuple = ()

    def _own_cpu(self) -> float:
        return _self_cpu() + sum(process_cpu(pid) for pid in self.helpers)

    def __enter__(self) -> OthersMonitor:
        self.start = (*_proc_stat(), self._own_cpu(), time.perf_counter(), os.getloadavg())
        return self

    def __exit__(self, *exc) -> None:
        self.stop = (*_proc_stat(), self._own_cpu(), time.perf_counter(), os.getloadavg())

    def result(self) -> dict:
        (b0, s0, t0, me0, w0, l0), (b1, s1, t1, me1, w1, l1) = self.start, self.stop
        machine = max(t1 - t0, 1e-9)
        others = max(0.0, (b1 - b0) - (me1 - me0)) / machine
        return {
            "others_share": others,
            "steal_share": (s1 - s0) / machine,
            "own_cpu_s": me1 - me0,
            "wall_s": w1 - w0,
            "load_before": l0,
            "load_after": l1,
        }


def spread(times) -> float:
    """(max - min) / median of per-iteration seconds."""
    ts = sorted(times)
    return (ts[-1] - ts[0]) / ts[len(ts) // 2] if ts else float("nan")


def machine_load_reasons(monitor: dict) -> list[str]:
    """Why the machine was not quiet during a run ([] = quiet): others' CPU or the hypervisor's."""
    why = []
    if not monitor["others_share"] <= OTHERS_MAX:
        why.append(f"other processes used {monitor['others_share']:.0%} of the CPU")
    if monitor["steal_share"] > STEAL_MAX:
        why.append(f"the hypervisor stole {monitor['steal_share']:.0%} of the CPU")
    return why


def validity(monitor: dict, spreads: dict[str, float]) -> list[str]:
    """Why a run cannot be trusted ([] = valid): a loaded machine, or a side's spread."""
    why = machine_load_reasons(monitor)
    for side, s in spreads.items():
        if not s <= SPREAD_MAX:
            why.append(f"{side}'s step times spread {s:.0%} (max - min over median)")
    return why


def theoretical_fp32_peak(cpuinfo: str | None = None) -> dict:
    """The machine's fp32 FMA peak from /proc/cpuinfo (``cpuinfo``: its text, read when None):
    cores x nominal MHz x fp32 lanes per FMA pipe x 2 FMA pipes x 2 FLOPs, the lanes from the pipe
    width (``host.fma_datapath_bits``: 256 on Zen 4 even with AVX-512). The nominal clock is what
    the VM reports; turbo can exceed it, so a measured rate above this figure means the cores ran
    faster than nominal."""
    cpu = cpu_identity(cpuinfo)
    if not cpu:
        return {}
    lanes = cpu["fma_datapath_bits"] // 32
    cores = os.cpu_count() or 1
    mhz = cpu["mhz"]
    return {
        "flops": cores * mhz * 1e6 * lanes * 2 * 2,
        "basis": f"{cores} cores x {mhz:.0f} MHz x {lanes} fp32 lanes x 2 FMA pipes x 2 FLOPs",
    }
