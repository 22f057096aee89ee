"""KernelCost counts the page faults and system time of the blocks it wraps, per step."""

import numpy as np

from tools.bench.kernel_cost import KernelCost
from tools.bench.train_step_table import kernel_cost_lines


def test_touching_fresh_memory_is_counted_per_step():
    cost = KernelCost()
    with cost.over(2):
        for _ in range(2):
            a = np.empty(64 * 2**20, np.uint8)  # 64 MiB, mapped afresh: 16,384 pages
            a[::4096] = 1
            del a
    with cost.over(2):
        pass
    assert cost.steps == 4
    # Two fresh 64 MiB buffers: at least one fault per page touched, 2 MiB pages if the kernel
    # backs them with huge pages (64 faults), 4 KiB pages otherwise (32,768).
    assert cost.faults >= 2 * 64 * 2**20 / (2 * 2**20)
    assert cost.faults_per_step == cost.faults / 4
    assert cost.system_s_per_step >= 0.0


def test_empty_cost_is_not_a_number():
    assert np.isnan(KernelCost().faults_per_step)


def test_table_line_reports_both_sides_and_the_setting():
    row = {"config": "small", "jax_page_faults_per_step": 10.0, "torch_page_faults_per_step": 5e4,
           "jax_system_s_per_step": 0.01, "torch_system_s_per_step": 0.2}  # fmt: skip
    runs = [("run1.json", {"rows": [row], "machine": {"host_memory": "applied"}}),
            ("run2.json", {"rows": [dict(row, jax_page_faults_per_step=30.0)],
                           "machine": {"host_memory": "applied"}})]  # fmt: skip
    (blank, line) = kernel_cost_lines(runs, ["small", "tiny"])
    assert blank == ""
    assert line == (
        "small, kernel work per step over 2 runs (host memory: applied): minor page faults "
        "jaxlvlm 20 [10-30], PyTorch 50,000 [50,000-50,000]; system CPU seconds jaxlvlm 0.010 "
        "[0.010-0.010], PyTorch 0.200 [0.200-0.200]."
    )
    assert kernel_cost_lines([("old.json", {"rows": [{"config": "small"}]})], ["small"]) == []
