"""The instruction text of a prompt: the user turns' content, without the chat template.

Continual LLaVA embeds the instruction with a sentence encoder. A prompt decoded from the batch
carries the template's scaffold too (role words such as "user" and "assistant", turn markers), and
embedding that makes every instruction look alike. ``prompt_markers`` learns, once per tokenizer,
the text its chat template puts right before and right after a user message (by rendering a
conversation with sentinel contents and passing it through encode/decode, so the markers look
exactly as a decoded batch row does); ``instruction_text`` keeps only what lies between them.
Decode the prompt tokens WITH special tokens (``skip_special_tokens=False``) so the markers stay
intact; special-token strings left inside a user turn are removed afterwards.
"""

from __future__ import annotations

import dataclasses
import os

_SENTINELS = ("qqfirstqq", "qqreplyqq", "qqsecondqq")


@dataclasses.dataclass(frozen=True)
class PromptMarkers:
    """user_open / user_close: the text around a user message's content in a decoded prompt;
    strip: strings removed from the extracted text (special tokens, image placeholders)."""

    user_open: str
    user_close: str
    strip: tuple[str, ...] = ()


def _common_suffix(a: str, b: str) -> str:
    n = len(os.path.commonprefix([a[::-1], b[::-1]]))
    return a[len(a) - n :]


def prompt_markers(tokenizer, extra_strip: tuple[str, ...] = ("<image>",)) -> PromptMarkers:
    """The markers of ``tokenizer``'s chat template (see the module docstring).

    user_open = the longest common suffix of what precedes the first and the second user turn;
    user_close = the longest common prefix of what follows them (the turn end plus the assistant
    header). Raises ValueError when the template does not render user turns recognisably.
    """
    first, reply, second = _SENTINELS
    messages = [
        {"role": "user", "content": first},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": second},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    text = tokenizer.decode(ids, skip_special_tokens=False)
    pos = [text.find(s) for s in _SENTINELS]
    if min(pos) < 0 or sorted(pos) != pos:
        raise ValueError(
            f"the chat template does not render user/assistant turns in order: {text!r}"
        )
    ends = [p + len(s) for p, s in zip(pos, _SENTINELS, strict=True)]
    user_open = _common_suffix(text[: pos[0]], text[ends[1] : pos[2]])
    user_close = os.path.commonprefix([text[ends[0] : pos[1]], text[ends[2] :]])
    if not user_open or not user_close:
        raise ValueError(f"no marker separates user turns from the template: {text!r}")
    specials = tuple(t for t in getattr(tokenizer, "all_special_tokens", ()) if t)
    return PromptMarkers(user_open, user_close, specials + tuple(extra_strip))


def instruction_text(prompt: str, markers: PromptMarkers) -> str:
    """The user turns' content of a decoded prompt, joined by newlines, markers removed.

    A prompt without any user marker (no template) is returned whole, minus the strip strings.
    A last user turn without its closing marker (a truncated prompt) runs to the end.
    """
    parts, start = [], prompt.find(markers.user_open)
    if start < 0:
        parts = [prompt]
    while start >= 0:
        begin = start + len(markers.user_open)
        end = prompt.find(markers.user_close, begin)
        end = len(prompt) if end < 0 else end
        parts.append(prompt[begin:end])
        start = prompt.find(markers.user_open, end)
    cleaned = []
    for part in parts:
        for s in markers.strip:
            part = part.replace(s, "")
        if part.strip():
            cleaned.append(part.strip())
    return "\n".join(cleaned)
