"""The continual comparisons' learnability gate (docs/benchmark.md, Continual LLaVA).

A task passes when its score right after its own training is at least twice its chance level, or
at least 20 points for free-form answers. The chance level is computed from the task's own test
samples: each sample's chance is one over the number of answers its question admits (a colour
question admits the suite's 6 colours, a left/right question 2, a four-way relation 4, a sum of
two digits 19 values), averaged over the test split, so a family that mixes question kinds gets
the chance of its actual mix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from jaxlvlm.data.builtin.domains import COLOUR_NAMES
from jaxlvlm.data.builtin.registry import make_records
from jaxlvlm.data.builtin.scenes import SHAPE_NAMES
from jaxlvlm.federated.flower.protocol import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FREE_FORM_THRESHOLD = 20.0
# Families whose answers are free-form (a box, a caption, characters, an arithmetic result): no
# finite answer set a guess could be drawn from, so the fixed threshold applies.
FREE_FORM = ("grounding", "caption", "reading", "arithmetic")
_FOUR_WAY = ("Answer left, right, above or below", "left of, right of, above or below")


def admissible_answers(family: str, record: dict) -> int | None:
    """How many answers the record's question admits; None for a free-form family.

    record: a builtin record with 'meta' (make_records(..., with_meta=True)).
    """
    if family in FREE_FORM:
        return None
    answer = record["answer"]
    if family == "attribute":
        return len(COLOUR_NAMES) if answer in COLOUR_NAMES else len(SHAPE_NAMES)
    if family == "counting":
        return 7  # 0-6
    if family == "spatial":
        question = record["conversations"][0]["value"]
        return 4 if any(phrase in question for phrase in _FOUR_WAY) else 2  # yes/no is 2 too
    if family == "digits":
        return 10
    if family == "digit_pair":
        return 19 if record["meta"]["op"] == 0 else 10  # a sum is 0-18; larger/smaller 0-9
    if family == "mcq":
        return 4
    raise ValueError(
        f"learnability gate: no answer count for family {family!r}; add it to "
        "tools/method_bench/gate.py (admissible_answers) before gating a stream that uses it."
    )


def chance_level(spec: dict, image_size: int) -> float | None:
    """Chance accuracy in percent of one builtin eval source spec (None: free-form)."""
    family = spec["family"]
    if family in FREE_FORM:
        return None
    records = make_records(
        family,
        spec["split"],
        int(spec["num"]),
        int(spec["seed"]),
        domain=spec.get("domain", "plain"),
        image_size=image_size,
        with_meta=True,
        wording=spec.get("wording", "shared"),
    )
    counts = [admissible_answers(family, r) for r in records]
    return 100.0 * sum(1.0 / n for n in counts) / len(counts)


def thresholds(eval_sources: Sequence[dict], image_size: int) -> dict[str, dict]:
    """{task: {'chance': percent or None, 'threshold': percent}} of a stream's eval sources."""
    out = {}
    for spec in eval_sources:
        chance = chance_level(spec, image_size)
        threshold = FREE_FORM_THRESHOLD if chance is None else 2.0 * chance
        out[spec["task"]] = {"chance": chance, "threshold": threshold}
    return out


def verdict(score: float, gate: dict) -> str:
    """'pass' when a task's score after its own training reaches its threshold, else 'FAIL'."""
    return "pass" if score >= gate["threshold"] else "FAIL"


def task_spec(task: str) -> dict:
    """The builtin family and domain of a stream task name ('counting-noisy')."""
    family, _, domain = task.partition("-")
    return {"type": "builtin", "family": family, "domain": domain or "plain", "task": task}


def cell_gate(command: Sequence[str], tasks: Sequence[str]) -> list[dict]:
    """The gate of each task [T] of a continual cell, from its recorded jaxlvlm.main command.

    The tasks come from the cell's record, not the config file as it stands now (a stream whose
    families were replaced after the check still reads its old cells right); the number of test
    samples, their seed and wording, and the image size are the cell's config's.
    """
    spec = command[list(command).index("--config") + 1]
    config = load_config(os.path.join(ROOT, spec))  # relative to the repository, not the cwd
    shared = {k: config.data.eval_sources[0].get(k) for k in ("num", "seed", "wording")}
    specs = [
        {**task_spec(t), "split": "test", **{k: v for k, v in shared.items() if v is not None}}
        for t in tasks
    ]
    gate = thresholds(specs, config.model.vision.image_size)
    return [gate[t] for t in tasks]
