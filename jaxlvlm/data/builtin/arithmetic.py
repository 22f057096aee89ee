"""Text-only family: one-digit arithmetic with no image, so text-only paths are always exercised."""

from __future__ import annotations

import numpy as np

from jaxlvlm.data.builtin.sample import Context, Plan, Sample, pick

_ADD = ("What is {a} plus {b}?", "{a} + {b} = ?", "Compute {a} + {b}.")
_SUB = ("What is {a} minus {b}?", "{a} - {b} = ?", "Compute {a} - {b}.")


def arithmetic(rng: np.random.Generator, ctx: Context) -> Plan:
    """'What is 3 plus 4?' -> '7'; subtraction never goes below zero. No image, no placeholder."""
    a, b = (int(v) for v in rng.integers(0, 10, size=2))
    if rng.uniform() < 0.5:
        question, answer = pick(rng, _ADD).format(a=a, b=b), a + b
    else:
        a, b = max(a, b), min(a, b)
        question, answer = pick(rng, _SUB).format(a=a, b=b), a - b
    meta = {"a": a, "b": b, "value": answer}
    # The key is the exact question: a question seen in training never appears verbatim in val/test,
    # though the same sum may, phrased differently (155 problems are too few to also split by value).
    return Plan(question, lambda: Sample([], question, str(answer), "number", meta))
