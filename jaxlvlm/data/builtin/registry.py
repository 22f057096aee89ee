"""The built-in benchmark suite: family registry, seeded splits, and records in the data contract.

Every record is a pure function of (family, split, index, seed, domain, image_size): records can be
generated in any order, in parallel, or fetched by index from a `BuiltinSource` (a random-access data
source for Grain). Splits use separate seed streams and, in addition, each sample's content key is
hashed into a bucket (80% train, 10% val, 10% test) and redrawn until it lands in the requested split,
so no question about the same scene (or the same handwritten digit) appears in two splits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from jaxlvlm.data.builtin.arithmetic import arithmetic
from jaxlvlm.data.builtin.digits import digit_pair, digits
from jaxlvlm.data.builtin.domains import get_domain, list_domains
from jaxlvlm.data.builtin.reading import reading
from jaxlvlm.data.builtin.reasoning_tasks import caption, mcq
from jaxlvlm.data.builtin.sample import Context, Plan
from jaxlvlm.data.builtin.scene_tasks import attribute, counting, grounding, spatial
from jaxlvlm.data.builtin.scenes import encode_png
from jaxlvlm.data.builtin.wording import check_wording

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_BUCKETS = {"train": (0, 80), "val": (80, 90), "test": (90, 100)}
_MAX_DRAWS = 10_000
MIN_IMAGE_SIZE = 16


@dataclass(frozen=True)
class Family:
    """A task family of the suite.

    Attributes:
      name: registry name (also the task name in the plain domain).
      plan: (content rng, Context) -> Plan.
      scorer: scorer name used by its records (jaxlvlm.eval.scorers).
      description: one line for listings and reports.
      images_per_sample: how many images a record has at most (0 = text-only).
    """

    name: str
    plan: Callable[[np.random.Generator, Context], Plan]
    scorer: str
    description: str
    images_per_sample: int = 1


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("attribute", attribute, "exact_match", "colour or shape of an object"),
        Family("counting", counting, "number", "count objects, of a shape or a colour (0-6)"),
        Family("spatial", spatial, "exact_match", "left/right/above/below, and yes/no relations"),
        Family("reading", reading, "exact_match", "read 1-3 rendered characters"),
        Family("grounding", grounding, "iou", "box of a named object, [x0, y0, x1, y1]"),
        Family("mcq", mcq, "option_letter", "four-option reasoning questions, answer A-D"),
        Family("caption", caption, "caption", "short caption listing the objects"),
        Family("digits", digits, "number", "which handwritten digit (real load_digits images)"),
        Family(
            "digit_pair",
            digit_pair,
            "number",
            "sum/larger/smaller of two handwritten digits, one or two images",
            images_per_sample=2,
        ),
        Family("arithmetic", arithmetic, "number", "text-only one-digit arithmetic, no image", 0),
    )
}


def list_families() -> list[str]:
    """Names of the task families, in a fixed order."""
    return list(FAMILIES)


def get_family(name: str) -> Family:
    """Looks a family up by name; an unknown name raises a ValueError listing the known ones."""
    if name not in FAMILIES:
        raise ValueError(f"Unknown built-in family {name!r}; choose one of {list_families()}.")
    return FAMILIES[name]


def task_name(family: str, domain: str = "plain") -> str:
    """Default task name of a family in a domain: 'counting', 'counting-noisy'."""
    return family if domain == "plain" else f"{family}-{domain}"


def _stable_int(text: str) -> int:
    # Python's hash() is salted per process; a digest is the same everywhere.
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _bucket(family: str, key) -> int:
    return _stable_int(repr((family, key))) % 100


def _check_args(
    family: str, split: str, seed: int, domain: str, image_size: int, wording: str = "shared"
) -> None:
    get_family(family)
    get_domain(domain)
    check_wording(wording, family)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r} for built-in family {family!r}; use {SPLITS}.")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"Built-in suite seed must be a non-negative integer, got {seed!r}.")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(
            f"image_size={image_size} is too small for the built-in suite; use at least "
            f"{MIN_IMAGE_SIZE} pixels."
        )


def make_record(
    family: str,
    split: str,
    index: int,
    seed: int,
    domain: str = "plain",
    image_size: int = 32,
    with_meta: bool = False,
    task: str | None = None,
    wording: str = "shared",
) -> dict:
    """Generates record `index` of a family's split.

    Args:
      family: a name from list_families().
      split: 'train', 'val' or 'test'.
      index: position in the split's stream (>= 0).
      seed: suite seed (>= 0).
      domain: a name from list_domains(); the same seed gives the same scenes in every domain.
      image_size: square image side in pixels.
      with_meta: also return the generator's ground truth under 'meta' (for tests and analysis).
      task: task name stored in the record (default task_name(family, domain)).
      wording: 'shared' (one set of phrasings for every domain) or 'domain' (each domain its own
        set, jaxlvlm.data.builtin.wording); only the question text depends on it.
    Returns:
      {'id', 'images': list of PNG bytes ([] for text-only), 'conversations': [human, gpt],
       'task', 'answer', 'scorer'} (+ 'meta').
    """
    _check_args(family, split, seed, domain, image_size, wording)
    fam = FAMILIES[family]
    split_code = SPLITS.index(split)
    fam_code = _stable_int(family) & 0xFFFFFFFF
    domain_code = list_domains().index(domain)
    content_rng = np.random.default_rng(
        np.random.SeedSequence(int(seed), spawn_key=(fam_code, split_code, int(index), 0))
    )
    style_rng = np.random.default_rng(
        np.random.SeedSequence(
            int(seed), spawn_key=(fam_code, split_code, int(index), 1 + domain_code)
        )
    )
    ctx = Context(get_domain(domain), int(image_size), split, style_rng, wording)
    lo, hi = _SPLIT_BUCKETS[split]
    for _ in range(_MAX_DRAWS):
        plan = fam.plan(content_rng, ctx)
        if plan.key is None or lo <= _bucket(family, plan.key) < hi:
            break
    else:  # only reachable if a family's key space has no member in this split
        raise RuntimeError(
            f"Built-in family {family!r} found no sample for split {split!r} in {_MAX_DRAWS} draws."
        )
    sample = plan.render()
    record = {
        "id": f"{family}-{domain}-{split}-s{seed}-{index:06d}",
        "images": [encode_png(image) for image in sample.images],
        "conversations": [
            {"from": "human", "value": sample.prompt},
            {"from": "gpt", "value": sample.answer},
        ],
        "task": task if task is not None else task_name(family, domain),
        "answer": sample.answer,
        "scorer": sample.scorer,
    }
    if with_meta:
        record["meta"] = sample.meta
    return record


def make_records(
    family: str,
    split: str,
    num: int,
    seed: int,
    domain: str = "plain",
    image_size: int = 32,
    start: int = 0,
    with_meta: bool = False,
    task: str | None = None,
    wording: str = "shared",
) -> list[dict]:
    """Records start .. start+num-1 of a family's split (see make_record for the arguments).

    A prefix is stable: make_records(..., num=10) equals the first 10 of make_records(..., num=100).
    """
    _check_args(family, split, seed, domain, image_size, wording)
    return [
        make_record(family, split, i, seed, domain, image_size, with_meta, task, wording)
        for i in range(start, start + num)
    ]


@dataclass(frozen=True)
class BuiltinSource:
    """Random-access source of one family/split/domain (len + getitem), e.g. for grain.MapDataset.

    Records are generated on access, so the source costs no memory and no disk.
    """

    family: str
    split: str
    num: int
    seed: int
    domain: str = "plain"
    image_size: int = 32
    task: str | None = None
    wording: str = "shared"

    def __post_init__(self) -> None:
        _check_args(self.family, self.split, self.seed, self.domain, self.image_size, self.wording)
        if self.num < 0:
            raise ValueError(f"BuiltinSource num must be >= 0, got {self.num}.")

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num:
            raise IndexError(
                f"Index {index} out of range for built-in source {self.family}/{self.split} "
                f"of {self.num} records."
            )
        return make_record(
            self.family, self.split, int(index), self.seed, self.domain, self.image_size,
            task=self.task, wording=self.wording,
        )  # fmt: skip
