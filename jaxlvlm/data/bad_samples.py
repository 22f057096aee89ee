"""Bad-sample policy: every rejected sample is named, counted per reason, and reported.

A problem with one sample (malformed JSON line, a line that is not UTF-8, missing or unreadable
image, image path escaping the image root, no assistant turn, ``<image>`` count not matching the images, too long after truncation,
...) raises ``BadSample``. The pipeline hands it to a ``BadSamplePolicy``: with ``on_bad_sample='error'``
the error propagates; with ``'skip'`` the sample is dropped and counted, until more than
``max_bad_samples`` were dropped, which is an error again. ``summary()`` is the dict the runner logs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

OnBadSample = Literal["error", "skip"]

# The reasons the pipeline knows; BadSample accepts others, but these are the documented ones.
REASONS = (
    "malformed_json",
    "not_utf8",
    "malformed_record",
    "missing_image",
    "unreadable_image",
    "image_outside_root",
    "no_assistant_turn",
    "image_count_mismatch",
    "too_many_images",
    "too_long",
    "unknown_task",
    "image_token_in_text",
)


class BadSample(ValueError):
    """One sample cannot be used. Names the sample, where it came from, and why.

    Attributes:
      reason: a short machine-readable code (one of REASONS), the key of the skip counters.
      sample_id: the sample's 'id' (or '?' when it could not be read).
      location: file and line / dataset and index, when known.
      detail: a human sentence with what is wrong and what to do.
    """

    def __init__(self, reason: str, sample_id: str, detail: str, location: str = ""):
        self.reason = reason
        self.sample_id = str(sample_id)
        self.location = location
        self.detail = detail
        where = f" at {location}" if location else ""
        super().__init__(f"bad sample {self.sample_id!r}{where}: [{reason}] {detail}")

    def with_location(self, location: str) -> BadSample:
        """The same error with a location filled in (keeps an existing one)."""
        if self.location:
            return self
        return BadSample(self.reason, self.sample_id, self.detail, location)


class TooManyBadSamples(RuntimeError):
    """More samples were skipped than ``max_bad_samples`` allows."""


@dataclasses.dataclass
class BadSamplePolicy:
    """Decides what happens to a bad sample and keeps the per-reason counters.

    on_bad_sample: 'error' raises at the first bad sample; 'skip' drops and counts it.
    max_bad_samples: the most samples 'skip' may drop in total (over the life of the counters,
      restored with the iterator state); one more is an error. 0 with 'skip' behaves like 'error'.
    """

    on_bad_sample: OnBadSample = "error"
    max_bad_samples: int = 100
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    examples: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.on_bad_sample not in ("error", "skip"):
            raise ValueError(f"on_bad_sample must be 'error' or 'skip', got {self.on_bad_sample!r}")
        if self.max_bad_samples < 0:
            raise ValueError(f"max_bad_samples must be >= 0, got {self.max_bad_samples}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def handle(self, error: BadSample) -> None:
        """Records a skipped sample, or raises if the policy says so.

        Raises:
          BadSample: when on_bad_sample is 'error'.
          TooManyBadSamples: when skipping this one would exceed max_bad_samples.
        """
        if self.on_bad_sample == "error":
            raise error
        if self.total + 1 > self.max_bad_samples:
            raise TooManyBadSamples(
                f"more than max_bad_samples={self.max_bad_samples} bad samples "
                f"(skipped so far per reason: {self.counts}); the latest: {error}. "
                "Fix the data or raise data.max_bad_samples."
            ) from error
        self.counts[error.reason] = self.counts.get(error.reason, 0) + 1
        # Keep the first message per reason so the report can show a concrete example.
        self.examples.setdefault(error.reason, str(error))

    def summary(self) -> dict[str, Any]:
        """{'skipped_total': int, 'skipped_by_reason': {reason: n}, 'examples': {reason: message}}."""
        return {
            "skipped_total": self.total,
            "skipped_by_reason": dict(sorted(self.counts.items())),
            "examples": dict(sorted(self.examples.items())),
        }

    def get_state(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "examples": dict(self.examples)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.counts = {str(k): int(v) for k, v in state.get("counts", {}).items()}
        self.examples = {str(k): str(v) for k, v in state.get("examples", {}).items()}
