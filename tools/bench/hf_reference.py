"""The PyTorch reference: a transformers LlavaForConditionalGeneration built from a bench config.

The model is created with random weights from a fixed seed and saved as safetensors, so jaxlvlm loads
exactly the same weights through its public ``load_pretrained``.
"""

from __future__ import annotations

from typing import Any

IMAGE_TOKEN_ID = 3


def llava_hf_config(cfg: dict[str, Any]):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    v, t = cfg["vision"], cfg["text"]
    vision = CLIPVisionConfig(
        hidden_size=v["hidden"],
        intermediate_size=v["inter"],
        num_hidden_layers=v["layers"],
        num_attention_heads=v["heads"],
        image_size=v["image"],
        patch_size=v["patch"],
        projection_dim=v["hidden"],
    )
    text = LlamaConfig(
        vocab_size=t["vocab"],
        hidden_size=t["hidden"],
        intermediate_size=t["inter"],
        num_hidden_layers=t["layers"],
        num_attention_heads=t["heads"],
        num_key_value_heads=t["kv_heads"],
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=IMAGE_TOKEN_ID,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )


def image_tokens(cfg: dict[str, Any]) -> int:
    v = cfg["vision"]
    return (v["image"] // v["patch"]) ** 2


def build_torch_llava(cfg: dict[str, Any], seed: int = 0):
    import torch
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(llava_hf_config(cfg))
    model.eval()
    return model


def save_torch_llava(model, out_dir: str) -> str:
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def make_inputs(cfg: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """One image per sample at the start, then text; numpy arrays in transformers' layout.

    Returns input_ids [B, L], attention_mask [B, L], pixel_values_nchw [B, 3, H, W],
    labels [B, L] (-100 on image tokens) and loss_mask [B, L].
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    b, seq = cfg["batch"], cfg["seq"]
    n_img = image_tokens(cfg)
    vocab = cfg["text"]["vocab"]
    ids = rng.integers(4, vocab, size=(b, seq)).astype(np.int64)
    ids[:, 1 : 1 + n_img] = IMAGE_TOKEN_ID
    ids[:, 0] = 1
    mask = np.ones((b, seq), dtype=np.int64)
    labels = ids.copy()
    labels[:, : 1 + n_img] = -100
    size = cfg["vision"]["image"]
    pixels = rng.standard_normal((b, 3, size, size)).astype(np.float32)
    return dict(input_ids=ids, attention_mask=mask, pixel_values_nchw=pixels, labels=labels)
