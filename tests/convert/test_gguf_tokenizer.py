"""The GGUF tokenizer rebuilt from the file equals transformers' GGUF tokenizer, chat template included."""

from __future__ import annotations

import os

import pytest
from gguf_fixtures import smollm2_gguf_path

from jaxlvlm.convert.hf_io import ConversionError
from jaxlvlm.data.gguf_tokenizer import load_gguf_tokenizer

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "12345 apples cost $3.50, i.e. 3½ or x² per 1,000,000 units (2024-06-01).",
    "Hello  world\n\n  indented\t\ttabs\r\nwindows line",
    "<|im_start|>user\nWhat is in the image?<|im_end|>\n<|im_start|>assistant\n",
    "naïve café 😀 日本語のテキスト Ünïcödé",
    "It's   don't  we'll THEY'RE",
    "   leading spaces and trailing   ",
    "a<|endoftext|>b <repo_name> def f(x):\n    return x ** 2",
]


@pytest.fixture(scope="module")
def tokenizers_pair():
    from transformers import AutoTokenizer

    path = smollm2_gguf_path()
    ours = load_gguf_tokenizer(path)
    ref = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    return ours, ref


def test_encodes_like_transformers(tokenizers_pair):
    from transformers import PreTrainedTokenizerFast

    ours, ref = tokenizers_pair
    assert isinstance(ours, PreTrainedTokenizerFast)
    assert len(ours) == len(ref) == 49152
    for text in TEXTS:
        ids = ours(text)["input_ids"]
        assert ids == ref(text)["input_ids"], text
        assert ours.decode(ids) == text
    assert (
        ours.decode(ours("<|im_start|>hi<|im_end|>")["input_ids"], skip_special_tokens=True) == "hi"
    )


def test_special_tokens_and_chat_template(tokenizers_pair):
    ours, ref = tokenizers_pair
    for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
        assert getattr(ours, name) == getattr(ref, name), name
    assert ours.eos_token == "<|im_end|>" and ours.convert_tokens_to_ids("<|im_end|>") == 2
    assert ours.chat_template and ours.chat_template == ref.chat_template
    messages = [
        {"role": "user", "content": "Describe the picture in one sentence."},
        {"role": "assistant", "content": "A cat sits on a red sofa."},
        {"role": "user", "content": "What colour is the sofa?"},
    ]
    text = ours.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == ref.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    assert ours(text)["input_ids"] == ref(text)["input_ids"]


def test_file_without_tokenizer_is_named(tmp_path):
    import gguf
    import numpy as np

    path = str(tmp_path / "notok.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ConversionError, match="notok.gguf.*no tokenizer"):
        load_gguf_tokenizer(path)
