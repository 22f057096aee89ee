"""Model FLOPs of a train step, for MFU: the matmuls of ViT, connector and LLM.

Counted: every dense projection (2 * m * k * n), attention scores and values (2 * 2 * L^2 * d per
layer; causal attention at half), the LM head. Not counted: norms, activations, softmax, embeddings
lookups. Forward + backward = 3 x forward. The tower runs on every image slot (B * N), used or not,
because shapes are static.
"""

from __future__ import annotations

from jaxlvlm.models.config import LVLMConfig, TextConfig, VisionConfig


def vision_flops(v: VisionConfig) -> float:
    """Forward FLOPs of the tower for one image."""
    p = v.num_positions
    d, ff = v.hidden_size, v.intermediate_size
    patch = 2 * v.num_patches * (v.patch_size**2 * v.num_channels) * d
    per_layer = 2 * p * 4 * d * d + 2 * p * 2 * d * ff + 2 * 2 * p * p * d
    return float(patch + v.num_layers * per_layer)


def connector_flops(cfg: LVLMConfig) -> float:
    """Forward FLOPs of the connector for one image (linear or two-layer MLP; other connectors are
    counted as a two-layer MLP, the common case)."""
    t, dv, c = cfg.image_tokens_per_image, cfg.vision.hidden_size, cfg.text.hidden_size
    if cfg.connector == "linear":
        return float(2 * t * dv * c)
    return float(2 * t * (dv * c + c * c))


def text_flops(t: TextConfig, length: int) -> float:
    """Forward FLOPs of the decoder for one sequence of ``length`` tokens, LM head included."""
    hd = t.resolved_head_dim
    c, ff = t.hidden_size, t.intermediate_size
    proj = 2 * c * (t.num_heads * hd) * 2 + 2 * c * (t.num_kv_heads * hd) * 2
    mlp = 3 * 2 * c * ff
    attn = 0.5 * 2 * 2 * length * t.num_heads * hd  # per token, causal
    head = 2 * c * t.vocab_size
    return float(length * (t.num_layers * (proj + mlp + attn) + head))


def train_step_flops(
    cfg: LVLMConfig | TextConfig, batch_size: int, length: int, image_slots: int = 0
) -> float:
    """FLOPs of one train step (forward + backward) for a [batch_size, length] batch with
    ``image_slots`` image slots per row."""
    if isinstance(cfg, TextConfig):
        fwd = batch_size * text_flops(cfg, length)
    else:
        per_image = vision_flops(cfg.vision) + connector_flops(cfg)
        fwd = batch_size * (text_flops(cfg.text, length) + image_slots * per_image)
    return 3.0 * fwd
