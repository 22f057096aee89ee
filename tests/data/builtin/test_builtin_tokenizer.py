"""The built-in BPE tokenizer: loads with AutoTokenizer, round-trips, chat template, regeneration."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from jaxlvlm.data.builtin import builtin_tokenizer_path, list_families, make_records
from jaxlvlm.data.builtin.bpe_tokenizer import save_tokenizer_dir, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(builtin_tokenizer_path())


def test_files_and_special_tokens(tokenizer):
    names = {p.name for p in Path(builtin_tokenizer_path()).iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= names
    assert tokenizer.is_fast
    assert len(tokenizer) <= 1024
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<pad>", 0)
    assert (tokenizer.bos_token, tokenizer.bos_token_id) == ("<s>", 1)
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|im_end|>", 3)
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") == 2
    assert tokenizer.convert_tokens_to_ids("<image>") == 4


def test_image_placeholder_is_one_token(tokenizer):
    ids = tokenizer("<image>\n<image>\nWhat is the sum?", add_special_tokens=False).input_ids
    assert ids.count(4) == 2
    assert ids[0] == 4 and tokenizer.convert_ids_to_tokens(ids[1]) == "Ċ" and ids[2] == 4
    # No special tokens are added outside the chat template.
    assert tokenizer("red").input_ids == tokenizer("red", add_special_tokens=False).input_ids


def test_round_trip_on_suite_text_and_arbitrary_text(tokenizer):
    texts = ["Hello, wörld! ✓ 3.14 [0.10, 0.25, 0.50, 0.75]  two  spaces\tand tabs\n"]
    for family in list_families():
        for record in make_records(family, "test", 15, seed=0, image_size=16):
            texts += [turn["value"] for turn in record["conversations"]]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert tokenizer.decode(ids) == text
    # Suite words are whole tokens; digits are always single tokens.
    assert len(tokenizer(" purple", add_special_tokens=False).input_ids) == 1
    assert len(tokenizer("1234", add_special_tokens=False).input_ids) == 4


def test_chat_template(tokenizer):
    messages = [
        {"role": "user", "content": "<image>\nWhat colour is the circle?"},
        {"role": "assistant", "content": "red"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<s><|im_start|>user\n<image>\nWhat colour is the circle?<|im_end|>\n"
        "<|im_start|>assistant\nred<|im_end|>\n"
    )
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert (
        prompt
        == "<s><|im_start|>user\n<image>\nWhat colour is the circle?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert text.startswith(prompt)  # prefix renderings are prefixes (assistant masks need it)
    system = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, *messages], tokenize=False
    )
    assert system.startswith("<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    parts = tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "\nhi"}]}],
        tokenize=False,
    )
    assert parts == "<s><|im_start|>user\n<image>\nhi<|im_end|>\n"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert ids[:2] == [1, 2] and ids.count(3) == 2 and ids.count(4) == 1
    assert tokenizer.convert_ids_to_tokens(ids[2]) == "user"
    with pytest.raises(Exception, match="Unknown chat role"):
        tokenizer.apply_chat_template([{"role": "robot", "content": "x"}], tokenize=False)


def test_regeneration_is_deterministic(tmp_path):
    """The CLI's training reproduces the versioned files byte for byte."""
    out = Path(save_tokenizer_dir(train_tokenizer(), tmp_path / "tok"))
    committed = Path(builtin_tokenizer_path())
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (out / name).read_bytes() == (committed / name).read_bytes(), (
            f"{name} differs from a fresh training run (the suite's text changed?): run "
            "`python tools/train_builtin_tokenizer.py` and commit the assets"
        )
