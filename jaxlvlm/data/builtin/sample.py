"""What a task family's generator returns: a cheap plan that renders into a sample on demand.

The registry draws plans until one falls in the requested split (by a hash of `Plan.key`), and only
then pays for rendering; this keeps the train/val/test contents disjoint at little cost.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from jaxlvlm.data.builtin.domains import Domain

IMAGE = "<image>"


@dataclass
class Sample:
    """One generated question/answer pair.

    Attributes:
      images: uint8 images [H, W, 3], one per '<image>' placeholder in `prompt`.
      prompt: the human turn, with '<image>' placeholders.
      answer: the assistant turn and the scoring reference.
      scorer: name of the scorer in jaxlvlm.eval.scorers.
      meta: ground truth the answer was derived from (objects, boxes, digit labels, ...).
    """

    images: list[np.ndarray]
    prompt: str
    answer: str
    scorer: str
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """A drawn but not yet rendered sample.

    Attributes:
      key: hashable content summary that decides the split; None when the family keeps splits
        disjoint itself (e.g. by partitioning a real image set).
      render: builds the Sample.
    """

    key: Hashable | None
    render: Callable[[], Sample]


@dataclass(frozen=True)
class Context:
    """Per-sample rendering context handed to a family.

    Attributes:
      domain: the visual domain.
      image_size: image side in pixels.
      split: 'train', 'val' or 'test'.
      style_rng: random stream for domain effects (texture, noise), separate from the content
        stream so one seed gives the same scenes in every domain.
      wording: 'shared' (every domain asks with the family's one set of phrasings) or 'domain'
        (each domain has its own set, jaxlvlm.data.builtin.wording; only the families listed there).
    """

    domain: Domain
    image_size: int
    split: str
    style_rng: np.random.Generator
    wording: str = "shared"


def pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    """One element of a list of phrasings, drawn uniformly."""
    return options[int(rng.integers(len(options)))]
