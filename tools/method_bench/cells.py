"""The method benchmark's comparisons: for each, its config file and its cells (docs/benchmark.md).

A cell is one approach of one comparison at one seed: ``python -m jaxlvlm.main --config
<config>:<args> --workdir <out>/<comparison>/<cell>/seed<k> --config.seed=<k>``. The scenario's own
colon arguments (``Comparison.args``) are shared by every cell; a cell adds its approach. ``{out}``
and ``{seed}`` in a cell's arguments are filled in (a cell that reads another cell's summary, e.g.
the joint run's for the relative gain, lists that cell in ``after``).

``shared``: paths of a cell's workdir that every cell of the same seed has in common (the base
model every approach starts from, its scores): trained by the first cell of a seed and copied into
the others before they start, so the base is trained once per seed.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Cell:
    name: str
    args: str
    after: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Comparison:
    name: str
    config: str
    args: str
    cells: tuple[Cell, ...]
    shared: tuple[str, ...] = ()

    def cell(self, name: str) -> Cell:
        for c in self.cells:
            if c.name == name:
                return c
        raise KeyError(f"comparison {self.name!r} has no cell {name!r}; cells: {self.cell_names}")

    @property
    def cell_names(self) -> list[str]:
        return [c.name for c in self.cells]


BASE_SHARED = ("base", "base_eval", "base_scores.json")

_JOINT = "joint_summary={out}/lifelong/joint/seed{seed}/summary.json"

# Pilot (docs/benchmark.md): 800 training samples per client, 300 test samples per task; rounds
# and local epochs sized to the CPU budget (the dated note of 2026-11-30 there); every client's
# model scored on 60 test samples of its task after every round (the per-round curves).
_PILOT = "per_client=800,eval_num=300,rounds=2,epochs=1,round_eval_num=60"
_FEDERATED = ("pilot", "fedavg", "fedprox", "local", "centralized")

COMPARISONS = {
    c.name: c
    for c in (
        Comparison(
            name="lifelong",
            config="configs/lifelong_builtin.py",
            args="num=600,eval_num=300,epochs=4,clusters=6",
            cells=(
                Cell("joint", "approach=joint"),
                Cell("adapt_inf", f"approach=adapt_inf,{_JOINT}", after=("joint",)),
                Cell("random", f"approach=random,{_JOINT}", after=("joint",)),
                Cell("scorer", f"approach=scorer,{_JOINT}", after=("joint",)),
                Cell("all", f"approach=all,{_JOINT}", after=("joint",)),
            ),
            shared=BASE_SHARED,
        ),
        *(
            Comparison(
                name=f"pilot_{scenario}",
                config="configs/federated_builtin.py",
                args=f"scenario={scenario},{_PILOT}",
                cells=tuple(Cell(a, f"approach={a}") for a in _FEDERATED),
                shared=BASE_SHARED,
            )
            for scenario in ("multimodal", "mixed")
        ),
    )
}
