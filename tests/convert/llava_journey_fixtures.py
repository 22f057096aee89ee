"""Inputs of the "train your own LLaVA" journey: separate tiny random towers saved by transformers,
a tokenizer without '<image>', and a small LLaVA-format JSONL dataset with its images."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = 16
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 50, 230)}
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_WORDS = (
    "what colour is the square red green blue describe image a photo of small big answer with one "
    "word user assistant it shows dark light"
)


def make_tokenizer():
    """A byte-level BPE tokenizer with a ChatML template and no '<image>' token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_WORDS] * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHATML
    return fast


def save_vision_tower(path: Path, style: str = "clip") -> None:
    """Saves a random CLIPVisionModel / SiglipVisionModel (IMAGE_SIZE pixels, 4 patches) to ``path``."""
    import torch
    import transformers

    torch.manual_seed(0)
    name = {"clip": "CLIPVision", "siglip": "SiglipVision"}[style]
    config = getattr(transformers, f"{name}Config")(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=8,
    )
    getattr(transformers, f"{name}Model")(config).save_pretrained(path)


def save_towers(root: Path, vision_style: str = "clip", text_arch: str = "llama") -> dict:
    """Saves a random vision tower and a random causal LM (with the tokenizer) in two directories.

    Returns {'vision': dir, 'llm': dir, 'vocab': the LM's vocabulary size (= len(tokenizer))}.
    """
    import torch
    import transformers

    out = {"vision": root / "vision", "llm": root / "llm"}
    save_vision_tower(out["vision"], vision_style)
    tokenizer = make_tokenizer()
    out["vocab"] = len(tokenizer)
    text_cls = {"llama": "Llama", "qwen2": "Qwen2"}[text_arch]
    lm = getattr(transformers, f"{text_cls}ForCausalLM")(
        getattr(transformers, f"{text_cls}Config")(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            tie_word_embeddings=False,
        )
    )
    with torch.no_grad():  # random but not tiny: a greedy argmax should not hinge on rounding
        for p in lm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    lm.save_pretrained(out["llm"])
    tokenizer.save_pretrained(out["llm"])
    return out


def colour_image(name: str, seed: int) -> Image.Image:
    """A IMAGE_SIZE square of colour ``name`` with some noise."""
    rng = np.random.default_rng(seed)
    base = np.array(COLOURS[name], np.float32)
    pixels = base + rng.normal(0, 20, (IMAGE_SIZE, IMAGE_SIZE, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_jsonl(root: Path, n: int) -> tuple[Path, Path]:
    """n LLaVA-format samples ('what colour is the square' -> the colour) -> (jsonl, image root)."""
    images = root / "images"
    images.mkdir(parents=True)
    names = sorted(COLOURS)
    lines = []
    for i in range(n):
        colour = names[i % len(names)]
        buf = io.BytesIO()
        colour_image(colour, i).save(buf, format="PNG")
        (images / f"{i}.png").write_bytes(buf.getvalue())
        entry = {
            "id": f"s{i}",
            "image": f"{i}.png",
            "conversations": [
                {"from": "human", "value": "<image>\nwhat colour is the square"},
                {"from": "gpt", "value": colour},
            ],
        }
        lines.append(json.dumps(entry))
    path = root / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, images
