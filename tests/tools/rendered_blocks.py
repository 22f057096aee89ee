"""Shared check: a BENCHMARKS block is exactly what its tool renders from the committed run."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from tools.bench.common import ROOT
from tools.method_bench.readme_blocks import markers


def assert_block_rendered(
    block: str,
    result: str,
    table: Callable[[dict, str], list[str]],
    tool: str,
    doc: str = "BENCHMARKS.md",
) -> None:
    """``doc``'s ``block`` equals ``table(payload, name)`` of bench_results/``result``."""
    with open(os.path.join(ROOT, "bench_results", result)) as f:
        want = "\n".join(table(json.load(f), os.path.basename(result)))
    text = open(os.path.join(ROOT, doc)).read()
    begin, end = markers(block, tool)
    assert f"{begin}\n{want}\n{end}" in text, (
        f"{doc}: rerun {tool} bench_results/{result} --block {block} --write --file {doc}"
    )
