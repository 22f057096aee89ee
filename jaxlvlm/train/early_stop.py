"""Early stopping on a validation score: the plateau rule shared by CoTBal's probes and the base
model of the method comparisons."""

from __future__ import annotations

from collections.abc import Sequence


def stopped_improving(scores: Sequence[float], patience: int, min_delta: float = 0.0) -> bool:
    """Whether the last ``patience`` scores (higher is better, oldest first) all failed to beat
    the best score before them by more than ``min_delta``; False while fewer than patience + 1
    scores exist."""
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    if len(scores) <= patience:
        return False
    return max(scores[-patience:]) <= max(scores[:-patience]) + min_delta
