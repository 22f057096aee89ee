"""The instruction text of a decoded prompt: user content only, no template role words."""

import pytest
from transformers import AutoTokenizer

from jaxlvlm.data.builtin.bpe_tokenizer import builtin_tokenizer_path
from jaxlvlm.methods.instruction_text import PromptMarkers, instruction_text, prompt_markers


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(builtin_tokenizer_path())


def _decoded_prompt(tok, messages):
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tok.decode(tok(text, add_special_tokens=False)["input_ids"], skip_special_tokens=False)


def test_builtin_template_markers_and_extraction(tokenizer):
    m = prompt_markers(tokenizer)
    assert m.user_open.endswith("user\n") and "assistant" in m.user_close
    prompt = _decoded_prompt(
        tokenizer, [{"role": "user", "content": "<image>\nHow many circles are there?"}]
    )
    assert "user" in prompt and "assistant" in prompt  # what the runner embedded before
    assert instruction_text(prompt, m) == "How many circles are there?"


def test_multi_turn_keeps_every_user_turn_and_drops_answers(tokenizer):
    m = prompt_markers(tokenizer)
    messages = [
        {"role": "user", "content": "Name the colour of the square."},
        {"role": "assistant", "content": "Red, as the user asked."},
        {"role": "user", "content": "And the circle?"},
    ]
    got = instruction_text(_decoded_prompt(tokenizer, messages), m)
    assert got == "Name the colour of the square.\nAnd the circle?"


class _VicunaLike:
    """A LLaVA-v1 style template with plain-text role words and no special tokens."""

    all_special_tokens = ["</s>"]

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        text = "A chat between a curious user and an assistant. "
        for msg in messages:
            if msg["role"] == "user":
                text += "USER: " + msg["content"] + " "
            else:
                text += "ASSISTANT: " + msg["content"] + "</s>"
        return text + ("ASSISTANT:" if add_generation_prompt else "")

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(text)}

    def decode(self, ids, skip_special_tokens=False):
        return "".join(ids)


def test_plain_text_role_words():
    tok = _VicunaLike()
    m = prompt_markers(tok)
    assert m.user_open == "USER: " and m.user_close.startswith(" ASSISTANT:")
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is shown?"}])
    assert instruction_text(prompt, m) == "What is shown?"


def test_prompt_without_markers_is_kept_whole():
    m = PromptMarkers("<|im_start|>user\n", "<|im_end|>", ("<s>",))
    assert instruction_text("<s>Describe the image.", m) == "Describe the image."
