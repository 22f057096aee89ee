"""The benchmark's quiet-machine check: what it measures and when it calls a run invalid."""

import subprocess
import sys
import time

from tools.bench.quiet import (
    OthersMonitor,
    process_cpu,
    spread,
    theoretical_fp32_peak,
    validity,
)


def test_the_monitor_counts_this_process_own_cpu_time():
    with OthersMonitor() as m:
        c0 = time.process_time()
        x = 0
        while time.process_time() - c0 < 0.3:  # 0.3 s of our own CPU, however loaded the machine
            x += 1
        own = time.process_time() - c0
    r = m.result()
    assert abs(r["own_cpu_s"] - own) < 0.05  # the busy loop is counted as ours, not as others'
    assert 0.0 <= r["others_share"] <= 1.0 and len(r["load_before"]) == 3


def test_validity_names_each_reason():
    quiet = {"others_share": 0.02, "steal_share": 0.0}
    assert validity(quiet, {"jax": 0.05, "torch": 0.1}) == []
    why = validity({"others_share": 0.4, "steal_share": 0.1}, {"jax": 0.05, "torch": 0.9})
    assert why == [
        "other processes used 40% of the CPU",
        "the hypervisor stole 10% of the CPU",
        "torch's step times spread 90% (max - min over median)",
    ]
    assert (
        validity({"others_share": float("nan"), "steal_share": 0.0}, {}) != []
    )  # unknown: invalid


def test_spread_and_nominal_peak():
    assert spread([1.0, 1.1, 0.9, 1.0]) == (1.1 - 0.9) / 1.0
    peak = theoretical_fp32_peak()
    assert peak == {} or (peak["flops"] > 0 and "MHz" in peak["basis"])


def test_a_helper_process_cpu_time_counts_as_the_benchmarks_own():
    # A live child (a PyTorch worker) is not waited for, so os.times() does not see it; the monitor
    # reads its /proc entry instead.
    busy = "import time\nc = time.process_time()\nwhile time.process_time() - c < 0.4: pass\n" \
           "input()"  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", busy], stdin=subprocess.PIPE)
    try:
        with OthersMonitor(helpers=(child.pid,)) as m:
            while process_cpu(child.pid) < 0.4:
                time.sleep(0.05)
        r = m.result()
        assert r["own_cpu_s"] >= 0.35  # the child's loop, which started inside the block
        with OthersMonitor() as alone:
            pass
        assert alone.result()["own_cpu_s"] < 0.1
    finally:
        child.communicate(b"\n", timeout=30)
