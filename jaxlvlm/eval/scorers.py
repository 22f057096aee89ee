"""Answer scorers by name, pure Python: each maps (prediction, reference) to a score in [0, 1].

Names (a record's 'scorer' field):
  exact_match    case-insensitive string equality after trimming whitespace and a trailing period.
  vqa            VQA-v2 answer normalisation (punctuation, articles, number words -> digits,
                 contractions); against a list of human answers it is the VQA accuracy
                 min(1, matches / 3) averaged over leave-one-out subsets, as in the official eval.
  option_letter  extracts an option letter A-D from the prediction ('B', '(B)', 'B. red',
                 'The answer is B'); 1 if it equals the reference letter.
  iou            parses '[x0, y0, x1, y1]' from the prediction; IoU with the reference box.
  acc@0.5        1 if that IoU is at least 0.5 (grounding accuracy), else 0.
  caption        CIDEr-D (n = 1..4, TF-IDF cosine with clipped counts, Gaussian length penalty
                 sigma 6), divided by the CIDEr-D the reference gets against itself, so a caption
                 equal to the reference scores 1 and the score lies in [0, 1] (raw CIDEr-D: cider_d).
                 IDF needs a corpus: score_batch uses the references of all caption items in the call
                 (pass a whole task at once); a single score() call has no corpus and weights all
                 n-grams equally.
  number         relaxed numeric match (ChartQA style): the first number in the prediction (digits
                 or a number word) within 5% of the reference number (exact for small integers);
                 falls back to exact_match when the reference is not a number.

A malformed prediction (empty, not a string, no box, no letter, no number) scores 0 and never raises;
an unknown scorer name or an unusable reference is a data or config bug and raises ValueError.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

Reference = str | Sequence[str]

# ---------------------------------------------------------------------------------------------
# exact match


def normalize_exact(text: str) -> str:
    """Lower-case, trimmed, inner whitespace collapsed, trailing periods removed."""
    text = " ".join(text.strip().lower().split())
    return text.rstrip(".").rstrip()


def exact_match(prediction: str, reference: Reference) -> float:
    """1.0 if normalize_exact(prediction) equals that of the reference (or any of a list)."""
    refs = [reference] if isinstance(reference, str) else list(reference)
    pred = normalize_exact(prediction)
    return float(any(pred == normalize_exact(r) for r in refs))


# ---------------------------------------------------------------------------------------------
# VQA normalisation

_VQA_CONTRACTIONS = {
    "arent": "aren't",
    "cant": "can't",
    "couldnt": "couldn't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hes": "he's",
    "im": "i'm",
    "isnt": "isn't",
    "itll": "it'll",
    "ive": "i've",
    "shouldnt": "shouldn't",
    "thats": "that's",
    "theres": "there's",
    "theyre": "they're",
    "wasnt": "wasn't",
    "werent": "weren't",
    "whats": "what's",
    "wont": "won't",
    "wouldnt": "wouldn't",
    "youre": "you're",
}
_VQA_NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_VQA_ARTICLES = {"a", "an", "the"}
_VQA_PUNCT = ";/[]\"{}()=+\\_-><@`,?!*#%^&$~|:'"
# The official pattern "(?!<=\\d)(\\.)(?!\\d)" has a typo and so strips every period not followed
# by a digit; we keep its effective behaviour so scores match published numbers.
_PERIOD_STRIP = re.compile(r"\.(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def normalize_vqa(text: str) -> str:
    """The VQA-v2 evaluation's answer normalisation ('Two dogs.' -> '2 dogs')."""
    text = text.replace("\n", " ").replace("\t", " ").strip().lower()
    out = text
    for p in _VQA_PUNCT:
        # As in the official eval: a mark next to a space (or a thousands comma) is dropped,
        # elsewhere it separates words.
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD_STRIP.sub("", out)
    words = []
    for word in out.split():
        word = _VQA_NUMBERS.get(word, word)
        if word in _VQA_ARTICLES:
            continue
        words.append(_VQA_CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_accuracy(prediction: str, reference: Reference) -> float:
    """VQA accuracy against one answer (exact after normalisation) or a list of human answers."""
    pred = normalize_vqa(prediction)
    if isinstance(reference, str):
        return float(pred == normalize_vqa(reference))
    refs = [normalize_vqa(r) for r in reference]
    if not refs:
        raise ValueError("vqa scorer got an empty list of reference answers.")
    if len(refs) == 1:
        return float(pred == refs[0])
    # Official metric: for each annotator left out, min(1, matches among the others / 3); average.
    total = 0.0
    for i in range(len(refs)):
        matches = sum(r == pred for j, r in enumerate(refs) if j != i)
        total += min(1.0, matches / 3.0)
    return total / len(refs)


# ---------------------------------------------------------------------------------------------
# option letters

_EXPLICIT_LETTER = (
    re.compile(r"answer\s*(?:is|:)?\s*:?\s*\(?([A-D])\b", re.IGNORECASE),  # 'The answer is B'
    re.compile(r"option\s*\(?([A-D])\b", re.IGNORECASE),  # 'option C'
)
_LEADING_MARKED_LETTER = re.compile(r"^\s*(?:\(([A-D])\)|([A-D])[.):])")  # '(B)', 'B.', 'B)'
_LONE_LETTER = re.compile(r"(?<![A-Za-z])\(?([A-D])(?![A-Za-z])")
_FOLLOWED_BY_WORD = re.compile(r"\s+[a-z]")


def _is_article(text: str, match: re.Match) -> bool:
    # 'A red circle' starts with the article 'a', not with option A.
    return match.group(1).upper() == "A" and _FOLLOWED_BY_WORD.match(text, match.end(1)) is not None


def extract_option_letter(text: str) -> str | None:
    """The option letter A-D a free-form answer commits to, or None if there is none.

    Order: an explicit 'answer is X' / 'option X'; else the only standalone letter; else, when
    several letters appear ('B. blue, not C'), a leading marked letter ('B.', '(B)'); else None
    ('B or C' does not commit).
    """
    for pattern in _EXPLICIT_LETTER:
        for found in pattern.finditer(text):
            if not _is_article(text, found):
                return found.group(1).upper()
    letters = {m.group(1) for m in _LONE_LETTER.finditer(text) if not _is_article(text, m)}
    if len(letters) == 1:
        return letters.pop()
    leading = _LEADING_MARKED_LETTER.match(text)
    if letters and leading:
        return leading.group(1) or leading.group(2)
    return None


def option_letter(prediction: str, reference: Reference) -> float:
    """1.0 if the prediction's option letter equals the reference letter."""
    gold = extract_option_letter(reference if isinstance(reference, str) else reference[0])
    if gold is None:
        raise ValueError(f"option_letter scorer: reference {reference!r} names no option A-D.")
    return float(extract_option_letter(prediction) == gold)


# ---------------------------------------------------------------------------------------------
# boxes

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)")

Box = tuple[float, float, float, float]


def parse_box(text: str) -> Box | None:
    """The first four numbers of a text as (x0, y0, x1, y1), or None if fewer than four."""
    values = _NUMBER.findall(text)
    if len(values) < 4:
        return None
    x0, y0, x1, y1 = (float(v) for v in values[:4])
    return x0, y0, x1, y1


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes; 0 for empty or inverted boxes."""
    if a[2] <= a[0] or a[3] <= a[1] or b[2] <= b[0] or b[3] <= b[1]:
        return 0.0
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _gold_box(reference: Reference) -> Box:
    text = reference if isinstance(reference, str) else reference[0]
    box = parse_box(text)
    if box is None or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"iou scorer: reference {text!r} is not a box [x0, y0, x1, y1].")
    return box


def iou(prediction: str, reference: Reference) -> float:
    """IoU of the predicted box with the reference box (0 if no box can be parsed)."""
    gold = _gold_box(reference)
    pred = parse_box(prediction)
    return 0.0 if pred is None else box_iou(pred, gold)


def acc_at_half(prediction: str, reference: Reference) -> float:
    """1.0 if the predicted box overlaps the reference with IoU >= 0.5."""
    return float(iou(prediction, reference) >= 0.5)


# ---------------------------------------------------------------------------------------------
# numbers

_WORD_NUMBERS = {w: float(d) for w, d in _VQA_NUMBERS.items() if w != "none"}
_WORD_NUMBERS.update({"eleven": 11.0, "twelve": 12.0})
_NUMBER_OR_WORD = re.compile(
    r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+|\b(?:" + "|".join(_WORD_NUMBERS) + r")\b",
    re.IGNORECASE,
)


def parse_number(text: str) -> float | None:
    """The first number in a text ('7', '-2.5', '1,024', 'seven'), or None."""
    found = _NUMBER_OR_WORD.search(text)
    if found is None:
        return None
    token = found.group(0).lower()
    if token in _WORD_NUMBERS:
        return _WORD_NUMBERS[token]
    try:
        return float(token.replace(",", ""))
    except ValueError:
        return None


_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")


def relaxed_number(prediction: str, reference: Reference, tolerance: float = 0.05) -> float:
    """1.0 if the prediction's number is within `tolerance` (relative) of the reference number.

    A reference that is not a plain number ('7', '-2.5', '1,024', 'seven') is compared as text.
    """
    ref_text = normalize_exact(reference if isinstance(reference, str) else reference[0])
    if ref_text in _WORD_NUMBERS:
        gold = _WORD_NUMBERS[ref_text]
    elif _PLAIN_NUMBER.fullmatch(ref_text):
        gold = float(ref_text.replace(",", ""))
    else:
        return exact_match(prediction, reference)
    pred = parse_number(prediction)
    if pred is None or not math.isfinite(pred):
        return 0.0
    if gold == 0:
        return float(pred == 0)
    return float(abs(pred - gold) <= tolerance * abs(gold))


# ---------------------------------------------------------------------------------------------
# captions: CIDEr-D

_CIDER_N = 4
_CIDER_SIGMA = 6.0
_CAPTION_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def caption_tokens(text: str) -> list[str]:
    """Lower-cased word tokens without punctuation."""
    return _CAPTION_TOKEN.findall(text.lower())


def _ngrams(tokens: list[str]) -> list[Counter]:
    return [
        Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        for n in range(1, _CIDER_N + 1)
    ]


class _CiderCorpus:
    """TF-IDF vectors of reference sets, with document frequencies counted over those sets."""

    def __init__(self, references: Sequence[Sequence[str]]):
        doc_freq: Counter = Counter()
        for refs in references:
            doc_freq.update({g for r in refs for c in _ngrams(caption_tokens(r)) for g in c})
        if len(references) > 1:
            log_docs = math.log(float(len(references)))
            self.idf = lambda g: log_docs - math.log(max(1.0, float(doc_freq[g])))
        else:  # no corpus: uniform weights
            self.idf = lambda g: 1.0
        self.refs = [[self._vector(caption_tokens(r)) for r in refs] for refs in references]

    def _vector(self, tokens: list[str]):
        vecs = [{g: c * self.idf(g) for g, c in counter.items()} for counter in _ngrams(tokens)]
        norms = [math.sqrt(sum(v * v for v in vec.values())) for vec in vecs]
        return vecs, norms, len(tokens)

    def score(self, candidate: str, item: int) -> float:
        """CIDEr-D (0-10) of a candidate against reference set `item`."""
        cand_vecs, cand_norms, cand_len = self._vector(caption_tokens(candidate))
        total = 0.0
        for ref_vecs, ref_norms, ref_len in self.refs[item]:
            penalty = math.exp(-((cand_len - ref_len) ** 2) / (2 * _CIDER_SIGMA**2))
            for n in range(_CIDER_N):
                if cand_norms[n] == 0 or ref_norms[n] == 0:
                    continue
                ref = ref_vecs[n]
                # CIDEr-D clips candidate weights at the reference's.
                dot = sum(
                    min(v, ref.get(g, 0.0)) * ref.get(g, 0.0) for g, v in cand_vecs[n].items()
                )
                total += penalty * dot / (cand_norms[n] * ref_norms[n])
        return 10.0 * total / (_CIDER_N * max(1, len(self.refs[item])))


def cider_d(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """CIDEr-D of each candidate against its reference captions, on the usual 0-10 scale.

    Args:
      candidates: M candidate captions.
      references: M lists of reference captions; document frequencies are counted over these M
        reference sets. With a single set there is no corpus and every n-gram gets weight 1.
    Returns:
      M scores in [0, 10]. Captions shorter than 4 words cannot reach 10: their missing n-gram
      orders contribute 0, as in the reference implementation.
    """
    if len(candidates) != len(references):
        raise ValueError(
            f"cider_d got {len(candidates)} candidates but {len(references)} reference sets."
        )
    corpus = _CiderCorpus(references)
    return [corpus.score(c, i) for i, c in enumerate(candidates)]


def normalised_cider_d(
    candidates: Sequence[str], references: Sequence[Sequence[str]]
) -> list[float]:
    """CIDEr-D divided by the best CIDEr-D a reference itself gets, so a caption equal to a
    reference scores 1 whatever its length; in [0, 1].

    Plain CIDEr-D caps short captions below its maximum (a 3-word caption at 7.5 of 10), which
    would make 'caption' scores incomparable with the other families' [0, 1] accuracies. When the
    normaliser is 0 (every n-gram occurs in every reference set) the score falls back to exact
    token match.
    """
    if len(candidates) != len(references):
        raise ValueError(
            f"normalised_cider_d got {len(candidates)} candidates but {len(references)} "
            "reference sets."
        )
    corpus = _CiderCorpus(references)
    out = []
    for i, cand in enumerate(candidates):
        best = max((corpus.score(r, i) for r in references[i]), default=0.0)
        if best <= 0.0:
            tokens = caption_tokens(cand)
            out.append(float(any(tokens == caption_tokens(r) for r in references[i])))
        else:
            out.append(min(1.0, max(0.0, corpus.score(cand, i) / best)))
    return out


def caption_score(prediction: str, reference: Reference) -> float:
    """normalised_cider_d of one caption with no corpus (uniform n-gram weights), in [0, 1]."""
    refs = [reference] if isinstance(reference, str) else list(reference)
    return normalised_cider_d([prediction], [refs])[0]


# ---------------------------------------------------------------------------------------------
# registry

SCORERS: dict[str, Callable[[str, Reference], float]] = {
    "exact_match": exact_match,
    "vqa": vqa_accuracy,
    "option_letter": option_letter,
    "iou": iou,
    "acc@0.5": acc_at_half,
    "caption": caption_score,
    "number": relaxed_number,
}


def list_scorers() -> list[str]:
    """Names accepted by score() and score_batch()."""
    return list(SCORERS)


def _get(name: str) -> Callable[[str, Reference], float]:
    if name not in SCORERS:
        raise ValueError(f"Unknown scorer {name!r}; known scorers are {list_scorers()}.")
    return SCORERS[name]


def score(name: str, prediction, reference: Reference) -> float:
    """Score of one prediction in [0, 1] (0 for a malformed or non-string prediction).

    Args:
      name: a scorer name from list_scorers().
      prediction: the model's decoded answer.
      reference: the reference answer (or a list of them, for vqa, exact_match and caption).
    """
    scorer = _get(name)
    if not isinstance(prediction, str):
        return 0.0
    return float(scorer(prediction, reference))


def score_batch(
    names: Sequence[str], predictions: Sequence, references: Sequence[Reference]
) -> list[float]:
    """Scores of many predictions, each with its own scorer name.

    Caption items are scored together with CIDEr-D over the references of all caption items in
    the call, so pass a whole task's predictions at once for corpus-level IDF.

    Args:
      names: M scorer names.
      predictions: M predictions.
      references: M references.
    Returns:
      M floats in [0, 1].
    """
    if not len(names) == len(predictions) == len(references):
        raise ValueError(
            f"score_batch needs equally many names, predictions and references; got "
            f"{len(names)}, {len(predictions)}, {len(references)}."
        )
    for name in set(names):
        _get(name)
    scores = [
        0.0 if name == "caption" else score(name, pred, ref)
        for name, pred, ref in zip(names, predictions, references, strict=True)
    ]
    caption_items = [i for i, name in enumerate(names) if name == "caption"]
    if caption_items:
        cands = [p if isinstance(p, str) else "" for p in (predictions[i] for i in caption_items)]
        refs = [
            [references[i]] if isinstance(references[i], str) else list(references[i])
            for i in caption_items
        ]
        for i, value in zip(caption_items, normalised_cider_d(cands, refs), strict=True):
            scores[i] = value
    return scores
