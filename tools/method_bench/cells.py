"""The method benchmark's comparisons: for each, its config file and its cells (docs/benchmark.md).

A cell is one approach of one comparison at one seed: ``python -m jaxlvlm.main --config
<config>:<args> --workdir <out>/<comparison>/<cell>/seed<k> --config.seed=<k>``. The scenario's own
colon arguments (``Comparison.args``) are shared by every cell; a cell adds its approach. ``{out}``
and ``{seed}`` in a cell's arguments are filled in (a cell that reads another cell's summary, e.g.
the joint run's for the relative gain, lists that cell in ``after``).

``shared``: paths of a cell's workdir that every cell of the same seed has in common (the base
model every approach starts from, its scores): trained by the first cell of a seed and copied into
the others before they start, so the base is trained once per seed. ``base_from``: another
comparison whose cells train the identical base (the same base phase config, e.g. another task
order of the same continual stream); its cells of the same seed are a source of the shared paths
too. A copied base trained under another config is refused by the phase's drift check, naming the
key that differs, so a wrong ``base_from`` fails instead of sharing a different base.
"""

from __future__ import annotations

import dataclasses

from configs.continual_common import STREAM_STEPS_PER_TASK


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
    base_from: str = ""

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

# docs/benchmark.md, Continual LLaVA: 300 test samples per task, the base validated every 100 steps
# (patience 2) with an 800-step cap, the stream's steps per task (STREAM_STEPS_PER_TASK). seq_ft
# comes first: the first cell of a seed trains the base, and seq_ft seed 0 is the learnability
# gate's sizing cell.


def _cotbal(name: str, probe_args: str, weightings: tuple[str, ...]) -> Comparison:
    """A CoTBal comparison on the transfer scenario: one cell per weighting, 'stl' the single-task
    references at both budgets; ``probe_args`` sizes the probes' validation and step cap."""
    cells = tuple(
        Cell(w, "weightings=,stl=true" if w == "stl" else f"weightings={w}") for w in weightings
    )
    args = f"scenario=transfer,steps=300,eval_num=300,{probe_args}"
    return Comparison(name, "configs/cotbal_builtin.py", args, cells, shared=BASE_SHARED)


def _continual(stream: str) -> str:
    steps = STREAM_STEPS_PER_TASK[stream]
    return f"steps={steps},eval_num=300,base_steps=800,base_eval_every=100"


CONTINUAL_APPROACHES = ("seq_ft", "seq_lora", "continual_llava", "replay", "joint")
CONTINUAL_ORDER1_APPROACHES = ("seq_ft", "seq_lora", "continual_llava")
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
        _cotbal("cotbal", "val_num=100", ("ew", "cotbal", "tla", "dwa", "rlw", "stl")),
        # The second CoTBal scenario (docs/benchmark.md, note of 2026-12-07): probes up to the whole
        # final run and 300 validation samples per task, so the probe check can pass; only the cells
        # its claims read (EW, CoTBal, the references).
        _cotbal("cotbal_long_probes", "val_num=300,probe_max_ratio=1.0", ("ew", "cotbal", "stl")),
        *(
            Comparison(
                name=f"continual_{stream}",
                config=f"configs/continual_{stream}.py",
                args=_continual(stream),
                cells=tuple(Cell(a, f"approach={a}") for a in CONTINUAL_APPROACHES),
                shared=BASE_SHARED,
            )
            for stream in ("domain", "capability", "dataset")
        ),
        # The domain stream in the reversed order (palette -> textured -> noisy -> plain). Its base
        # phase is the domain stream's (the base trains on the tasks in data order, which the order
        # does not change), so it takes that comparison's base of the same seed when one exists.
        Comparison(
            name="continual_domain_order1",
            config="configs/continual_domain.py",
            args=f"{_continual('domain')},order=1",
            cells=tuple(Cell(a, f"approach={a}") for a in CONTINUAL_ORDER1_APPROACHES),
            shared=BASE_SHARED,
            base_from="continual_domain",
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
