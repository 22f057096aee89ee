"""Instruction wording of the built-in suite: one set of phrasings per family, or one per domain.

By default ('shared') a family asks its questions with the same phrasings in every visual domain,
so a domain-incremental stream changes only the pixels. With wording='domain' (a builtin source
option) each domain draws its questions from its own set of phrasings, disjoint from the other
domains' sets, as when each domain is a different dataset with its own annotation style (COAST-
domain's charts, documents, icons and medical images come from different datasets). The answer
format is unchanged, so a model that reads the image answers the same in both wordings.

Each domain's set has as many phrasings as the shared set, and the phrasing is chosen by the same
draw of the content stream (the same index into a set of the same length), so switching the
wording changes only the question text: the images, the answers and every later draw are the same.
"""

from __future__ import annotations

WORDINGS: tuple[str, ...] = ("shared", "domain")

# family -> the shared phrasings (what 'shared' asks in every domain).
SHARED: dict[str, tuple[str, ...]] = {
    "digits": (
        "Which digit is shown?",
        "What digit is this?",
        "What number is written in the image?",
    ),
}

# family -> domain -> that domain's own phrasings ('domain' wording). The plain domain keeps the
# shared set (the suite's original questions); every other domain reads like another dataset's
# annotation style: scanned forms (noisy), pencil on paper (textured), chalk on a board (palette).
BY_DOMAIN: dict[str, dict[str, tuple[str, ...]]] = {
    "digits": {
        "plain": SHARED["digits"],
        "noisy": (
            "Transcribe the handwritten numeral on this scanned form.",
            "Which numeral was filled in on the form?",
            "Read the value entered in this form field.",
        ),
        "textured": (
            "What value is sketched in pencil on this paper?",
            "Name the value of the pencil sketch.",
            "What value does the drawing on the sheet show?",
        ),
        "palette": (
            "The chalkboard shows one figure. Which one?",
            "What figure is chalked on the board?",
            "Tell me the figure written in chalk.",
        ),
    },
}


def check_wording(wording: str, family: str) -> None:
    """Refuses an unknown wording, or 'domain' for a family without per-domain phrasings."""
    if wording not in WORDINGS:
        raise ValueError(
            f"Unknown built-in wording {wording!r} (source key 'wording'); choose one of {WORDINGS}."
        )
    if wording == "domain" and family not in BY_DOMAIN:
        raise ValueError(
            f"Built-in family {family!r} has no per-domain phrasings (source key 'wording': "
            f"'domain' is defined for {sorted(BY_DOMAIN)}); use wording='shared'."
        )


def phrasings(family: str, domain: str, wording: str) -> tuple[str, ...]:
    """The phrasings ``family`` asks with in ``domain`` under ``wording``."""
    check_wording(wording, family)
    if wording == "shared":
        return SHARED[family]
    return BY_DOMAIN[family][domain]
