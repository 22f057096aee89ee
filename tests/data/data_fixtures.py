"""Helpers for the data pipeline tests: a tiny BPE chat tokenizer trained on the spot, and records.

The tokenizer is trained with the `tokenizers` library (under a second) and wrapped as a
PreTrainedTokenizerFast with a ChatML template, like the built-in suite's tokenizer.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<pad>", "<s>", "</s>", "<image>", "<|im_start|>", "<|im_end|>"]
WORDS = (
    "what colour is the square circle triangle red green blue yellow how many objects are there "
    "left right above below of the answer with one word describe image a small big 0 1 2 3 4 5 6 7 8 9 "
    "system you are a helpful assistant user assistant question is it true that yes no"
)


def png_bytes(color: tuple[int, int, int], size: int = 32, width: int | None = None) -> bytes:
    """A solid-colour PNG of size x size (or width x size)."""
    image = Image.new("RGB", (width or size, size), color)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def make_records(
    num: int, seed: int = 0, tasks: tuple[str, ...] = ("colour", "count")
) -> list[dict]:
    """Small records per the data contract: single-image, two-image and text-only samples."""
    rng = np.random.default_rng(seed)
    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    out = []
    for i in range(num):
        name = list(colours)[int(rng.integers(3))]
        kind = i % 4
        task = tasks[i % len(tasks)]
        if kind == 3:
            conv = [
                {"from": "human", "value": f"how many are {i % 10} and 1"},
                {"from": "gpt", "value": str(i % 10 + 1)},
            ]
            images = []
        elif kind == 2:
            conv = [
                {"from": "human", "value": "<image>\n<image>\nwhat colour is the left square"},
                {"from": "gpt", "value": name},
                {"from": "human", "value": "how many objects are there"},
                {"from": "gpt", "value": "2"},
            ]
            images = [png_bytes(colours[name]), png_bytes((9, 9, 9), width=48)]
        else:
            conv = [
                {"from": "human", "value": "<image>\nwhat colour is the square"},
                {"from": "gpt", "value": name},
            ]
            images = [png_bytes(colours[name])]
        out.append(
            {
                "id": f"s{i}",
                "images": images,
                "conversations": conv,
                "task": task,
                "answer": conv[-1]["value"],
                "scorer": "exact_match",
            }
        )
    return out


def train_chat_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([WORDS] * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<image>", "<|im_start|>"],
    )
    fast.chat_template = CHATML
    return fast
