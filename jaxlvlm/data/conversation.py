"""Conversation -> token ids and an assistant-token mask, through the tokenizer's own chat template.

The conversation is rendered to text with ``apply_chat_template`` (any transformers tokenizer, or the
GGUF one). Assistant spans are found by rendering prefixes: for assistant turn i the span is
``render(messages[:i+1])`` minus ``render(messages[:i], add_generation_prompt=True)``, i.e. the
answer text plus the template's end-of-turn marker, so the model learns to stop. This needs a template
whose renderings of prefixes are prefixes of the full rendering; a template that is not is rejected with
a clear error.

The text is tokenised in segments split at each '<image>', with ``add_special_tokens=False`` (the template
renders its own special tokens, as ``apply_chat_template(tokenize=True)`` does); each '<image>' becomes
``image_tokens_per_image`` copies of ``image_token_id``. A token is an assistant token when its first
character lies in an assistant span (offset mappings of the fast tokenizer).

Truncation never cuts image tokens: trailing text is cut; if the image tokens alone do not fit, or no
assistant token is left, the sample is a ``BadSample('too_long')``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from jaxlvlm.data.bad_samples import BadSample
from jaxlvlm.data.records import IMAGE_PLACEHOLDER, to_messages


@dataclasses.dataclass(frozen=True)
class TokenizedSample:
    """input_ids int32 [n]; assistant_mask bool [n] (True on answer tokens); num_image_tokens int."""

    input_ids: np.ndarray
    assistant_mask: np.ndarray
    num_image_tokens: int


def _render(tokenizer: PreTrainedTokenizerBase, messages, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def render_with_assistant_spans(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], sample_id: str = "?"
) -> tuple[str, list[tuple[int, int]]]:
    """Renders a full conversation; returns (text, [(start, end) char spans of assistant turns])."""
    try:
        text = _render(tokenizer, messages, add_generation_prompt=False)
    except ImportError:
        raise  # a missing package (e.g. jinja2) is the environment's fault, not the sample's
    except Exception as e:  # noqa: BLE001 - jinja errors (e.g. roles not alternating) name the sample
        raise BadSample(
            "malformed_record", sample_id, f"the chat template cannot render it: {e}"
        ) from e
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], add_generation_prompt=True)
        through = _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not (text.startswith(through) and through.startswith(before)):
            raise ValueError(
                "the tokenizer's chat template does not render conversation prefixes as prefixes of the "
                f"full conversation (sample {sample_id!r}, turn {i}), so assistant tokens cannot be located; "
                "use a template without history rewriting (e.g. ChatML)"
            )
        spans.append((len(before), len(through)))
    return text, spans


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids int32 [n], first-character offsets int64 [n]) without special tokens added.

    Goes to the Rust tokenizer directly when there is one (what the fast tokenizer's __call__ does
    underneath, minus a large per-call Python overhead).
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        enc = backend.encode(text, add_special_tokens=False)
        return np.asarray(enc.ids, np.int32), np.asarray([s for s, _ in enc.offsets], np.int64)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return np.asarray(enc["input_ids"], np.int32), np.asarray(
        [s for s, _ in enc["offset_mapping"]], np.int64
    )


def _tokenize_text(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    spans: list[tuple[int, int]],
    image_token_id: int,
    image_tokens_per_image: int,
    sample_id: str,
) -> TokenizedSample:
    ids: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    segments = text.split(IMAGE_PLACEHOLDER)
    starts = np.asarray([a for a, _ in spans], np.int64)
    ends = np.asarray([b for _, b in spans], np.int64)
    offset = 0
    for k, segment in enumerate(segments):
        if segment:
            seg_ids, seg_offsets = _encode(tokenizer, segment)
            if np.any(seg_ids == image_token_id):
                raise BadSample(
                    "image_token_in_text",
                    sample_id,
                    f"the text tokenises to image_token_id={image_token_id} outside an '<image>' placeholder; "
                    "remove that token from the text or configure an image_token_id the text never produces",
                )
            first_char = offset + seg_offsets
            inside = (first_char[:, None] >= starts[None, :]) & (
                first_char[:, None] < ends[None, :]
            )
            ids.append(seg_ids)
            masks.append(inside.any(axis=1) if len(spans) else np.zeros(len(seg_ids), bool))
        offset += len(segment)
        if k < len(segments) - 1:
            ids.append(np.full(image_tokens_per_image, image_token_id, np.int32))
            masks.append(np.zeros(image_tokens_per_image, bool))
            offset += len(IMAGE_PLACEHOLDER)
    input_ids = np.concatenate(ids) if ids else np.zeros(0, np.int32)
    mask = np.concatenate(masks) if masks else np.zeros(0, bool)
    return TokenizedSample(input_ids, mask, (len(segments) - 1) * image_tokens_per_image)


def tokenize_for_training(
    record: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    image_token_id: int,
    image_tokens_per_image: int,
    max_length: int,
) -> TokenizedSample:
    """A validated record -> TokenizedSample of at most ``max_length`` tokens (truncated at the end).

    Raises:
      BadSample('too_long') if the image tokens do not fit in max_length or no assistant token is left.
    """
    sid = record["id"]
    text, spans = render_with_assistant_spans(tokenizer, to_messages(record["conversations"]), sid)
    sample = _tokenize_text(tokenizer, text, spans, image_token_id, image_tokens_per_image, sid)
    n = len(sample.input_ids)
    if n > max_length:
        image_positions = np.flatnonzero(sample.input_ids == image_token_id)
        if len(image_positions) and image_positions[-1] >= max_length:
            raise BadSample(
                "too_long",
                sid,
                f"{n} tokens; its image tokens end at position {image_positions[-1] + 1} > the longest "
                f"bucket {max_length}; raise data.buckets or use fewer/smaller images",
            )
        sample = TokenizedSample(
            sample.input_ids[:max_length],
            sample.assistant_mask[:max_length],
            sample.num_image_tokens,
        )
    # A position k is learned when its target (token k+1) is an assistant token.
    if not sample.assistant_mask[1:].any():
        raise BadSample(
            "too_long" if n > max_length else "no_assistant_turn",
            sid,
            f"no assistant token is left to learn ({n} tokens, longest bucket {max_length})",
        )
    return sample


def tokenize_prompt(
    record: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    image_token_id: int,
    image_tokens_per_image: int,
    max_length: int,
) -> TokenizedSample:
    """Prompt for generation: the turns before the last assistant turn + the generation prompt.

    The returned assistant_mask is all False. Prompts are never truncated (that would cut the question
    or the generation prompt).

    Raises:
      BadSample('too_long') if the prompt is longer than max_length.
    """
    sid = record["id"]
    messages = to_messages(record["conversations"])
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    prompt_messages = messages[:last]
    if not prompt_messages:
        raise BadSample("malformed_record", sid, "the last assistant turn has no prompt before it")
    try:
        text = _render(tokenizer, prompt_messages, add_generation_prompt=True)
    except ImportError:
        raise
    except Exception as e:  # noqa: BLE001
        raise BadSample("malformed_record", sid, f"the chat template cannot render it: {e}") from e
    # Images referenced only in the dropped answer turn are not part of the prompt.
    sample = _tokenize_text(tokenizer, text, [], image_token_id, image_tokens_per_image, sid)
    if len(sample.input_ids) > max_length:
        raise BadSample(
            "too_long",
            sid,
            f"the prompt has {len(sample.input_ids)} tokens > the longest eval bucket {max_length}; "
            "raise data.buckets",
        )
    return sample
