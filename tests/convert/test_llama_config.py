"""config.json <-> TextConfig, and the errors a bad checkpoint gets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from llama_hf_tiny import make_hf_model

from jaxlvlm.convert.hf_io import ConversionError, TensorSource
from jaxlvlm.convert.llama import (
    decoder_params_from_hf,
    load_hf_causal_lm,
    text_config_from_hf,
    text_config_to_hf,
)
from jaxlvlm.models.config import TextConfig

LLAMA_OLD_STYLE = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 100,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 3,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "max_position_embeddings": 131072,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
}


def test_old_style_rope_theta_and_rope_scaling():
    cfg = text_config_from_hf(LLAMA_OLD_STYLE)
    assert cfg.arch == "llama"
    assert cfg.rope_theta == 500000.0
    assert cfg.rope_scaling_dict == {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    assert (cfg.num_kv_heads, cfg.resolved_head_dim, cfg.tie_word_embeddings) == (2, 8, True)


def test_rope_parameters_style_and_qwen2_bias():
    hf = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": 100,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rope_parameters": {"rope_theta": 1e6, "rope_type": "default"},
        "use_sliding_window": False,
    }
    cfg = text_config_from_hf(hf)
    assert (cfg.arch, cfg.attention_bias, cfg.rope_theta, cfg.rope_scaling) == (
        "qwen2",
        True,
        1e6,
        None,
    )


@pytest.mark.parametrize(
    "cfg",
    [
        TextConfig(),
        TextConfig(arch="qwen2", attention_bias=True, tie_word_embeddings=True, rope_theta=1e6),
        text_config_from_hf(LLAMA_OLD_STYLE),
        TextConfig(head_dim=32, rope_scaling=(("factor", 2.0), ("rope_type", "linear"))),
    ],
)
def test_config_round_trip(cfg):
    assert text_config_from_hf(json.loads(json.dumps(text_config_to_hf(cfg)))) == cfg


def test_transformers_reads_our_config_json():
    import transformers

    cfg = text_config_from_hf(LLAMA_OLD_STYLE)
    hf = transformers.LlamaConfig(**text_config_to_hf(cfg))
    assert hf.rope_parameters["rope_type"] == "llama3"
    assert hf.rope_parameters["rope_theta"] == 500000.0
    assert hf.num_key_value_heads == 2 and hf.tie_word_embeddings


def test_unsupported_architecture_names_the_supported_ones():
    with pytest.raises(ConversionError, match="LlamaForCausalLM.*Qwen2ForCausalLM"):
        text_config_from_hf({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"})


def test_unsupported_rope_type_and_sliding_window():
    bad = dict(LLAMA_OLD_STYLE, rope_scaling={"type": "yarn", "factor": 4.0})
    with pytest.raises(ConversionError, match="yarn.*supported"):
        text_config_from_hf(bad)
    qwen = dict(LLAMA_OLD_STYLE, architectures=["Qwen2ForCausalLM"], use_sliding_window=True)
    with pytest.raises(ConversionError, match="sliding"):
        text_config_from_hf(qwen)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    make_hf_model("llama_untied_mha").save_pretrained(str(path))
    from jaxlvlm.convert.hf_io import read_config, read_safetensors_dir

    return path, read_config(str(path)), read_safetensors_dir(str(path))


def test_mis_shaped_tensor_names_key_and_both_shapes(saved):
    _, hf, tensors = saved
    cfg = text_config_from_hf(hf)
    key = "model.layers.1.self_attn.k_proj.weight"
    tensors = dict(tensors, **{key: np.zeros((8, 64), np.float32)})
    with pytest.raises(ConversionError, match=r"k_proj\.weight.*\(8, 64\).*\(64, 64\)"):
        decoder_params_from_hf(cfg, TensorSource(tensors, "ckpt"))


def test_missing_tensor_is_named(saved):
    _, hf, tensors = saved
    cfg = text_config_from_hf(hf)
    tensors = {k: v for k, v in tensors.items() if k != "model.layers.0.mlp.up_proj.weight"}
    with pytest.raises(
        ConversionError, match=r"missing tensor 'model\.layers\.0\.mlp\.up_proj\.weight'"
    ):
        decoder_params_from_hf(cfg, TensorSource(tensors, "ckpt"))


def test_unused_tensors_are_reported(saved, tmp_path):
    from safetensors.numpy import save_file

    path, hf, tensors = saved
    extra = dict(tensors)
    extra["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.ones(8, np.float32)  # ignorable
    extra["model.layers.0.self_attn.q_norm.weight"] = np.ones(16, np.float32)  # not ours
    save_file(extra, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(hf))
    with pytest.raises(ConversionError, match=r"1 tensors are not used.*q_norm") as err:
        load_hf_causal_lm(str(tmp_path))
    assert "inv_freq" not in str(err.value)


def test_tied_config_with_different_lm_head_is_refused(saved):
    _, hf, tensors = saved
    cfg = text_config_from_hf(dict(hf, tie_word_embeddings=True))
    with pytest.raises(ConversionError, match="tie_word_embeddings"):
        decoder_params_from_hf(cfg, TensorSource(tensors, "ckpt"))


def test_pickle_only_directory_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_OLD_STYLE))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ConversionError, match="pickle.*safetensors"):
        load_hf_causal_lm(str(tmp_path))
