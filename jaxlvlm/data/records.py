"""The data record contract and its validation.

A record (what the built-in suite produces and the LLaVA JSON import reads into)::

  {'id': str, 'images': list[bytes] (encoded PNG/JPEG; [] for text-only),
   'conversations': [{'from': 'human' | 'gpt' | 'system', 'value': str with '<image>' placeholders}],
   'task': str, 'answer': str (reference for scoring; the last gpt turn unless set),
   'scorer': str (a name in jaxlvlm/eval/scorers.py)}

``validate_record`` checks what every consumer relies on and raises ``BadSample`` naming the sample.
"""

from __future__ import annotations

from typing import Any

from jaxlvlm.data.bad_samples import BadSample

IMAGE_PLACEHOLDER = "<image>"
ROLE_OF = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


def record_id(record: Any) -> str:
    """The record's id as a string, '?' when it has none."""
    if isinstance(record, dict) and record.get("id") is not None:
        return str(record["id"])
    return "?"


def validate_record(record: Any, location: str = "") -> dict[str, Any]:
    """Checks a record against the contract; returns it with defaults filled in.

    Fills: 'task' (default 'default'), 'answer' (last gpt turn), 'scorer' (default 'exact_match').

    Raises:
      BadSample with reason 'malformed_record', 'no_assistant_turn' or 'image_count_mismatch'.
    """
    sid = record_id(record)
    if not isinstance(record, dict):
        raise BadSample(
            "malformed_record",
            sid,
            f"a record must be a dict, got {type(record).__name__}",
            location,
        )
    conversations = record.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise BadSample(
            "malformed_record",
            sid,
            "'conversations' must be a non-empty list of {from, value} turns",
            location,
        )
    for k, turn in enumerate(conversations):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise BadSample(
                "malformed_record",
                sid,
                f"turn {k} must be a dict with a string 'value', got {turn!r:.80}",
                location,
            )
        if turn.get("from") not in ROLE_OF:
            raise BadSample(
                "malformed_record",
                sid,
                f"turn {k} has 'from'={turn.get('from')!r}; expected one of {sorted(ROLE_OF)}",
                location,
            )
    assistant_turns = [t["value"] for t in conversations if ROLE_OF[t["from"]] == "assistant"]
    if not assistant_turns:
        raise BadSample(
            "no_assistant_turn",
            sid,
            "the conversation has no 'gpt' turn, so there is nothing to learn",
            location,
        )
    images = record.get("images", [])
    if not isinstance(images, list | tuple):
        raise BadSample(
            "malformed_record", sid, "'images' must be a list of encoded image bytes", location
        )
    placeholders = sum(t["value"].count(IMAGE_PLACEHOLDER) for t in conversations)
    if placeholders != len(images):
        raise BadSample(
            "image_count_mismatch",
            sid,
            f"the text has {placeholders} '<image>' placeholder(s) but the sample has {len(images)} image(s); "
            "put exactly one '<image>' per image in the turns",
            location,
        )
    out = dict(record)
    out["id"] = sid
    out["images"] = list(images)
    out.setdefault("task", "default")
    if out.get("answer") is None:
        out["answer"] = assistant_turns[-1]
    out.setdefault("scorer", "exact_match")
    return out


def to_messages(conversations: list[dict[str, str]]) -> list[dict[str, str]]:
    """LLaVA turns [{'from', 'value'}] -> chat messages [{'role', 'content'}] for apply_chat_template."""
    return [{"role": ROLE_OF[t["from"]], "content": t["value"]} for t in conversations]
