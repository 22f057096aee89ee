"""Tiny random transformers LLaVA models and a mixed batch (multi-image, text-only, padded rows) in
transformers' input convention, for parity tests."""

from __future__ import annotations

import numpy as np
import torch

IMAGE_TOKEN = 5
VOCAB = 96
IMAGE_SIZE = 32
PATCH = 8


def _vision(style: str):
    from transformers import CLIPVisionConfig, SiglipVisionConfig

    cls = CLIPVisionConfig if style == "clip" else SiglipVisionConfig
    return cls(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
    )


# name -> (vision style, text config class, text kwargs, llava kwargs)
CASES = {
    # LLaVA-1.5 shape: CLIP, features from the second-to-last layer without the class token, Llama.
    "clip_llama": (
        "clip",
        "LlamaConfig",
        dict(num_attention_heads=4, num_key_value_heads=4),
        dict(vision_feature_layer=-2, vision_feature_select_strategy="default"),
    ),
    # SigLIP tower (all tokens, last hidden layer) with a Qwen2 decoder using GQA and q/k/v bias.
    "siglip_qwen2": (
        "siglip",
        "Qwen2Config",
        dict(num_attention_heads=4, num_key_value_heads=2, rope_theta=1e6),
        dict(vision_feature_layer=-1, vision_feature_select_strategy="full"),
    ),
}


def make_hf_llava(case: str, seed: int = 0):
    """A random-weight LlavaForConditionalGeneration (eval, eager attention, float32) with every weight
    perturbed (biases and norm scales too), so no mapping error hides behind a zero or a one."""
    import transformers

    style, text_cls, text_kwargs, llava_kwargs = CASES[case]
    text = getattr(transformers, text_cls)(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        **text_kwargs,
    )
    config = transformers.LlavaConfig(
        vision_config=_vision(style),
        text_config=text,
        image_token_id=IMAGE_TOKEN,
        tie_word_embeddings=False,
        **llava_kwargs,
    )
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def image_tokens(case: str) -> int:
    style, _, _, llava_kwargs = CASES[case]
    n = (IMAGE_SIZE // PATCH) ** 2 + (1 if style == "clip" else 0)
    return n - (1 if llava_kwargs["vision_feature_select_strategy"] == "default" else 0)


def make_batch(tokens_per_image: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Three rows: two images between text, text only, one image then right padding.

    Returns input_ids / attention_mask [3, L] int64, pixel_values [3, 2, H, W, 3] (channels last,
    unused slots zero), num_images [3], and hf_pixel_values [3, 3, H, W] (the real images in order).
    """
    rng = np.random.default_rng(seed)
    t = tokens_per_image
    img = [IMAGE_TOKEN] * t

    def text(n):
        return list(rng.integers(6, VOCAB, size=n))

    rows = [
        text(3) + img + text(2) + img + text(4),
        text(20),
        text(2) + img + text(5),
    ]
    num_images = np.array([2, 0, 1], np.int32)
    length = max(len(r) for r in rows) + 3
    input_ids = np.zeros((3, length), np.int64)
    mask = np.zeros((3, length), np.int64)
    for i, r in enumerate(rows):
        input_ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    images = rng.standard_normal((3, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    pixel_values = np.zeros((3, 2, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    pixel_values[0, 0], pixel_values[0, 1], pixel_values[2, 0] = images
    return dict(
        input_ids=input_ids,
        attention_mask=mask,
        pixel_values=pixel_values,
        num_images=num_images,
        hf_pixel_values=images.transpose(0, 3, 1, 2).copy(),
    )


def hf_logits(model, batch) -> np.ndarray:
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(batch["input_ids"]),
            attention_mask=torch.from_numpy(batch["attention_mask"]),
            pixel_values=torch.from_numpy(batch["hf_pixel_values"]),
        )
    return out.logits.numpy()
