"""The built-in suite's small BPE tokenizer: training (offline, deterministic) and its location.

Byte-level BPE (any text encodes, nothing is unknown) with digits split one per token, so numbers,
sums and box coordinates are spelled digit by digit. Special tokens: '<pad>' (0), '<s>' (bos, 1),
'<|im_start|>' (2), '<|im_end|>' (3, eos: it ends every turn, so generation stops on it) and
'<image>' (4, the image placeholder, always a single token). The chat template is ChatML-like:

  <s><|im_start|>system\\n...<|im_end|>\\n          (optional)
  <|im_start|>user\\n<image>\\nWhat colour ...?<|im_end|>\\n
  <|im_start|>assistant\\nred<|im_end|>\\n
  <|im_start|>assistant\\n                         (add_generation_prompt)

Files are written directly (tokenizer.json, tokenizer_config.json with the chat template inline,
special_tokens_map.json) rather than through transformers' save_pretrained, whose layout changes
between versions; AutoTokenizer.from_pretrained loads the directory as a PreTrainedTokenizerFast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from jaxlvlm.data.builtin.registry import list_families, make_records

PAD, BOS, IM_START, IM_END, IMAGE = "<pad>", "<s>", "<|im_start|>", "<|im_end|>", "<image>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, IM_START, IM_END, IMAGE)
VOCAB_SIZE = 1024
# Pairs rarer than this are not merged: random letter pairs of the reading family (about 1 per
# 1000 pairs each) stay single characters, while template words merge into whole-word tokens.
MIN_FREQUENCY = 20
CORPUS_SEED = 0
CORPUS_PER_FAMILY = 300

CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{- raise_exception('Unknown chat role ' + message['role'] + '; use system, user or assistant.') }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' %}{{- '<image>' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_ASSET_DIR = Path(__file__).resolve().parent / "assets" / "tokenizer"


def builtin_tokenizer_path() -> str:
    """Directory of the versioned built-in tokenizer (load with AutoTokenizer.from_pretrained)."""
    if not (_ASSET_DIR / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"The built-in tokenizer is missing from {_ASSET_DIR}; regenerate it with "
            "`python tools/train_builtin_tokenizer.py`."
        )
    return str(_ASSET_DIR)


def corpus(per_family: int = CORPUS_PER_FAMILY, seed: int = CORPUS_SEED) -> Iterator[str]:
    """Training texts: every family's prompts and answers (train split) after their chat roles.

    Texts are domain-independent, so the plain domain at a small image size is enough.
    """
    # The system role is rare in the suite; repeat it so 'system' becomes one token like the others.
    yield from ["system\nYou are a helpful assistant."] * (2 * MIN_FREQUENCY)
    for family in list_families():
        for record in make_records(family, "train", per_family, seed, image_size=16):
            for turn in record["conversations"]:
                role = "user" if turn["from"] == "human" else "assistant"
                # '<image>' is a special token: the BPE never sees it as text.
                yield f"{role}\n" + turn["value"].replace(IMAGE, "")


def train_tokenizer(
    per_family: int = CORPUS_PER_FAMILY, seed: int = CORPUS_SEED, vocab_size: int = VOCAB_SIZE
) -> Tokenizer:
    """Trains the byte-level BPE on corpus(per_family, seed); deterministic for fixed arguments."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=MIN_FREQUENCY,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # A sorted list: the trainer's pair counts must not depend on generation order.
    tokenizer.train_from_iterator(sorted(corpus(per_family, seed)), trainer=trainer)
    return tokenizer


def save_tokenizer_dir(tokenizer: Tokenizer, out_dir: str | os.PathLike) -> str:
    """Writes tokenizer.json, tokenizer_config.json (with the chat template), special_tokens_map.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"), pretty=True)
    special = {
        "bos_token": BOS,
        "eos_token": IM_END,
        "pad_token": PAD,
        "additional_special_tokens": [IM_START, IMAGE],
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "model_max_length": 4096,
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    for name, content in (("tokenizer_config.json", config), ("special_tokens_map.json", special)):
        (out / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
    return str(out)
