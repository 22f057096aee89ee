"""The FLOP count behind MFU with frozen weights: full training is 3 x forward; frozen weights drop
their weight gradients, and the layers below the lowest trained one drop their input gradients."""

from __future__ import annotations

import pytest

from jaxlvlm.models.config import LVLMConfig, TextConfig, VisionConfig
from jaxlvlm.train.flops import connector_flops, text_flops, vision_flops
from jaxlvlm.train.step_flops import count_step_flops

TEXT = TextConfig(
    vocab_size=128, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4, num_kv_heads=2
)
LVLM = LVLMConfig(
    vision=VisionConfig(
        style="siglip", image_size=16, patch_size=8, hidden_size=16, intermediate_size=32,
        num_layers=2, num_heads=2,
    ),
    text=TEXT,
    vision_feature_select_strategy="full",
)  # fmt: skip
B, L = 2, 24
LAYER = ["input_layernorm", "self_attn/q_proj", "self_attn/k_proj", "self_attn/v_proj",
         "self_attn/o_proj", "post_attention_layernorm", "mlp/gate_proj", "mlp/up_proj",
         "mlp/down_proj"]  # fmt: skip
ALL_TEXT = ["llm/embed_tokens/embedding", "llm/norm/scale", "llm/lm_head/kernel"] + [
    f"llm/layers_0/{n}/kernel" for n in LAYER
]


def _proj(n_in: int, n_out: int) -> float:
    return 2.0 * B * L * n_in * n_out


# Attention scores and values of the decoder (causal, half the square): their backward is 2 x that.
ATTN = B * L * 0.5 * 2 * 2 * L * TEXT.num_heads * TEXT.resolved_head_dim


def test_everything_trained_is_three_forwards():
    f = count_step_flops(TEXT, B, L, 0, ALL_TEXT, {}, scanned=False)
    assert f.forward == pytest.approx(B * text_flops(TEXT, L))
    assert f.total == pytest.approx(f.all_weights_3x)


def test_scanned_layers_count_the_same():
    scanned = [p.replace("layers_0/", "layers/") for p in ALL_TEXT]
    a = count_step_flops(TEXT, B, L, 0, ALL_TEXT, {}, scanned=False)
    b = count_step_flops(TEXT, B, L, 0, scanned, {}, scanned=True)
    assert a == b


def test_lora_on_q_alone_skips_the_frozen_weights_work():
    rank = 4
    f = count_step_flops(TEXT, B, L, 0, [], {"q_proj": rank}, scanned=False)
    fwd = B * text_flops(TEXT, L)
    hd = TEXT.resolved_head_dim
    qkv = _proj(32, 4 * hd) + 2 * _proj(32, 2 * hd)
    fa, fb = _proj(32, rank), _proj(rank, 4 * hd)
    assert f.forward == pytest.approx(fwd + fa + fb)
    assert f.weight_grad == pytest.approx(fa + fb)
    # Nothing below q/k/v trains: their input gradients are not needed; everything above needs
    # one (through the LoRA path), and the gradient through b is needed for a's.
    assert f.input_grad == pytest.approx(fwd - qkv + ATTN + fb)
    assert f.total < 0.75 * f.all_weights_3x


def test_stage_one_trains_only_the_connector():
    trained = ["connector/linear_1/kernel", "connector/linear_1/bias", "connector/linear_2/kernel"]
    f = count_step_flops(LVLM, B, L, 1, trained, {}, scanned=False)
    images = B * 1
    vis, con = images * vision_flops(LVLM.vision), images * connector_flops(LVLM)
    txt = B * text_flops(TEXT, L)
    lin1 = images * 2 * LVLM.image_tokens_per_image * 16 * 32
    assert f.forward == pytest.approx(vis + con + txt)
    assert f.weight_grad == pytest.approx(con)
    # Input gradients run through the whole LLM and the connector's second layer only: the frozen
    # tower below the connector gets none.
    assert f.input_grad == pytest.approx(txt + ATTN + con - lin1)
    assert f.total < 0.7 * f.all_weights_3x
