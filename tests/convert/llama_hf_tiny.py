"""Tiny random transformers Llama/Qwen2 models for parity tests (saved with save_pretrained)."""

from __future__ import annotations

import numpy as np
import torch

VOCAB = 128
HIDDEN = 64

# name -> (transformers config class name, config kwargs)
CASES = {
    # Llama, untied embeddings, multi-head attention (kv heads = heads).
    "llama_untied_mha": (
        "LlamaConfig",
        dict(
            num_attention_heads=4,
            num_key_value_heads=4,
            tie_word_embeddings=False,
            rope_theta=10000.0,
        ),
    ),
    # Llama, tied embeddings, GQA, llama3 rope scaling with a short original context so that the
    # scaled, smoothed and untouched frequency bands all occur at head_dim 16.
    "llama_tied_gqa_llama3": (
        "LlamaConfig",
        dict(
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=True,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        ),
    ),
    # Qwen2: GQA with q/k/v bias.
    "qwen2_gqa": (
        "Qwen2Config",
        dict(
            num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False, rope_theta=1e6
        ),
    ),
}


def make_hf_model(case: str, seed: int = 0):
    """A random-weight LlamaForCausalLM / Qwen2ForCausalLM in eval mode, eager attention, float32.

    Every weight (biases and norm scales included) is perturbed, so no mapping error can hide behind
    a zero bias or a unit scale.
    """
    import transformers

    cls_name, kwargs = CASES[case]
    config = getattr(transformers, cls_name)(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=96,
        num_hidden_layers=2,
        rms_norm_eps=1e-6,
        attn_implementation="eager",
        **kwargs,
    )
    torch.manual_seed(seed)
    model_cls = (
        transformers.LlamaForCausalLM
        if cls_name == "LlamaConfig"
        else transformers.Qwen2ForCausalLM
    )
    model = model_cls(config).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    return model


def padded_batch(lengths: list[int], length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded random token ids [B, length] (padding id 0) and the attention mask [B, length]."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, VOCAB, size=(len(lengths), length)).astype(np.int32)
    mask = (np.arange(length)[None, :] < np.asarray(lengths)[:, None]).astype(np.int32)
    return ids * mask, mask


def torch_additive_mask(mask: np.ndarray) -> torch.Tensor:
    """Causal + key-padding additive mask [B, 1, L, L] for the eager attention of transformers."""
    length = mask.shape[1]
    allowed = np.tril(np.ones((length, length), dtype=bool))[None] & mask.astype(bool)[:, None, :]
    additive = np.where(allowed, 0.0, np.finfo(np.float32).min).astype(np.float32)
    return torch.from_numpy(additive[:, None])


def default_positions_np(mask: np.ndarray) -> np.ndarray:
    return np.maximum(np.cumsum(mask, axis=-1) - 1, 0)
