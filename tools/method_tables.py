"""The README's method tables from the committed benchmark summaries (docs/benchmark.md).

    python tools/method_tables.py docs/method_runs/bench [--collect_from runs/bench] [--check]

--collect_from copies the finished cells of a benchmark's run directory into the committed tree
first (tools/method_bench/collect.py). Without --check the README's generated blocks are
rewritten and the figures drawn into <root>/figures/; with --check nothing is written and the exit
status says whether the README holds exactly what the summaries give and every figure it links
exists (a test runs this on the committed tree).
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script: make `tools` importable

from tools.method_bench import claims_summary, cotbal_tables, lifelong_tables, pilot_tables  # noqa: E402
from tools.method_bench.collect import collect  # noqa: E402
from tools.method_bench.continual_tables import RENDERERS as CONTINUAL_RENDERERS  # noqa: E402
from tools.method_bench.figure_sets import FIGURES  # noqa: E402
from tools.method_bench.figures import figure_path, link_lines  # noqa: E402
from tools.method_bench.readme_blocks import markers, replace_block  # noqa: E402
from tools.method_bench.tables_common import Cells  # noqa: E402

RENDERERS = {
    "lifelong": lifelong_tables.render,
    "cotbal": cotbal_tables.render,
    "cotbal_long_probes": cotbal_tables.render,
    "pilot_multimodal": pilot_tables.render,
    "pilot_mixed": pilot_tables.render,
}
RENDERERS.update(CONTINUAL_RENDERERS)  # the four continual streams, one block each
SUMMARY = "claims"  # the block of every comparison's claims and verdicts (claims_summary.py)


def render_readme(root: str, text: str, readme_dir: str = ROOT) -> str:
    """``text`` with every comparison present under ``root`` rendered into its block (tables, then
    links to its figures), and the claims summary into block ``claims`` where the text has one."""
    for name, render in RENDERERS.items():
        if os.path.isdir(os.path.join(root, name)):
            cells = Cells(root, name)
            figs = FIGURES[name](cells) if name in FIGURES else []
            lines = render(cells) + link_lines(root, name, figs, readme_dir)
            text = replace_block(text, name, lines)
    if markers(SUMMARY)[0] in text:
        text = replace_block(text, SUMMARY, claims_summary.render(root))
    return text


def figures(root: str) -> list[tuple[str, object]]:
    """(path, figure) of every figure of the comparisons present under ``root``."""
    out = []
    for name, make in FIGURES.items():
        if os.path.isdir(os.path.join(root, name)):
            out += [(figure_path(root, name, f), f) for f in make(Cells(root, name))]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="the committed tree of collected cells (docs/method_runs/bench)")
    p.add_argument("--collect_from", default="", help="a benchmark's run directory to copy first")
    p.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if out of date")
    a = p.parse_args(argv)
    if a.collect_from:
        for name in RENDERERS:
            for cell in collect(a.collect_from, a.root, name):
                print(f"collected {name}/{cell}")
    with open(a.readme) as f:
        old = f.read()
    new = render_readme(a.root, old, os.path.dirname(os.path.abspath(a.readme)))
    if a.check:
        missing = [path for path, _ in figures(a.root) if not os.path.exists(path)]
        if new != old or missing:
            print(f"{a.readme} is out of date or figures are missing ({missing}): run "
                  f"python tools/method_tables.py {a.root}")  # fmt: skip
            return 1
        return 0
    for path, fig in figures(a.root):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fig.draw(path)
    with open(a.readme, "w") as f:
        f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
