"""LLaVA import/export against transformers' LlavaForConditionalGeneration (fp32, highest precision):
full logits within 1e-4 on a batch with multi-image, text-only and padded rows; both key layouts;
export round trip; unused tensors reported; bad checkpoints refused with named errors."""

import json
import logging
import os

import jax
import numpy as np
import pytest
import torch
from llava_hf_tiny import CASES, hf_logits, image_tokens, make_batch, make_hf_llava
from safetensors.numpy import load_file, save_file

from jaxlvlm.convert import ConversionError, load_pretrained, save_pretrained_hf
from jaxlvlm.models import build_model
from jaxlvlm.models.config import RuntimeConfig


@pytest.fixture(scope="module", params=sorted(CASES))
def saved(request, tmp_path_factory):
    case = request.param
    model = make_hf_llava(case)
    path = tmp_path_factory.mktemp(case)
    model.save_pretrained(path)
    batch = make_batch(image_tokens(case))
    return case, model, str(path), batch, hf_logits(model, batch)


def _ours(cfg, params, batch, runtime=None):
    model = build_model(cfg, runtime)
    forward = jax.jit(lambda p, ids, mask, pix, n: model.apply({"params": p}, ids, mask, pix, n))
    return np.asarray(
        forward(
            params,
            batch["input_ids"].astype(np.int32),
            batch["attention_mask"].astype(np.int32),
            batch["pixel_values"],
            batch["num_images"],
        )
    )


def _max_err(got, want, batch):
    real = batch["attention_mask"].astype(bool)
    return np.abs(got - want)[real].max()


def test_logits_match_transformers(saved):
    case, _, path, batch, want = saved
    cfg, params = load_pretrained(path)
    assert cfg.image_tokens_per_image == image_tokens(case)
    got = _ours(cfg, params, batch)
    assert got.shape == want.shape
    assert _max_err(got, want, batch) < 1e-4


def test_scanned_layers_give_the_same_logits(saved):
    _, _, path, batch, want = saved
    cfg, params = load_pretrained(path, scan_layers=True)
    assert "layers" in params["vision"] and "layers" in params["llm"]
    got = _ours(cfg, params, batch, RuntimeConfig(scan_layers=True))
    assert _max_err(got, want, batch) < 1e-4


def test_older_vision_model_layout_loads_the_same(saved, tmp_path):
    _, _, path, _, _ = saved
    tensors = load_file(os.path.join(path, "model.safetensors"))
    renamed = {
        k.replace("vision_tower.", "vision_tower.vision_model.", 1): v for k, v in tensors.items()
    }
    assert any(k.startswith("vision_tower.vision_model.") for k in renamed)
    save_file(renamed, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(open(os.path.join(path, "config.json")).read())
    cfg_a, params_a = load_pretrained(path)
    cfg_b, params_b = load_pretrained(str(tmp_path))
    assert cfg_a == cfg_b
    jax.tree.map(np.testing.assert_array_equal, params_a, params_b)


def test_in_memory_layout_loads_the_same(saved, tmp_path):
    _, model, path, _, _ = saved
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    assert any(k.startswith("model.language_model.") for k in state)
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(open(os.path.join(path, "config.json")).read())
    _, params_a = load_pretrained(path)
    _, params_b = load_pretrained(str(tmp_path))
    jax.tree.map(np.testing.assert_array_equal, params_a, params_b)


def test_export_round_trip_through_transformers(saved, tmp_path):
    from transformers import LlavaForConditionalGeneration

    _, _, path, batch, want = saved
    cfg, params = load_pretrained(path)
    save_pretrained_hf(cfg, params, str(tmp_path))
    reloaded = LlavaForConditionalGeneration.from_pretrained(
        str(tmp_path), attn_implementation="eager", dtype=torch.float32
    ).eval()
    np.testing.assert_allclose(hf_logits(reloaded, batch), want, atol=1e-5, rtol=0)
    cfg2, params2 = load_pretrained(str(tmp_path))
    assert cfg2 == cfg
    jax.tree.map(np.testing.assert_array_equal, params, params2)


def test_unused_tensors_are_reported(saved, caplog):
    case, _, path, _, _ = saved
    with caplog.at_level(logging.WARNING, logger="jaxlvlm.convert.api"):
        load_pretrained(path)
    expected = "vision_tower.head.probe" if case.startswith("siglip") else "post_layernorm.weight"
    assert expected in caplog.text


def test_mis_shaped_tensor_names_both_shapes(saved, tmp_path):
    _, _, path, _, _ = saved
    tensors = load_file(os.path.join(path, "model.safetensors"))
    key = "multi_modal_projector.linear_1.weight"
    tensors[key] = tensors[key][:, :-1].copy()
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(open(os.path.join(path, "config.json")).read())
    with pytest.raises(
        ConversionError, match=r"linear_1.weight' has shape \(64, 31\), expected \(64, 32\)"
    ):
        load_pretrained(str(tmp_path))


def test_unmapped_tensor_is_an_error(saved, tmp_path):
    _, _, path, _, _ = saved
    tensors = load_file(os.path.join(path, "model.safetensors"))
    tensors["multi_modal_projector.linear_3.weight"] = np.zeros((2, 2), np.float32)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(open(os.path.join(path, "config.json")).read())
    with pytest.raises(ConversionError, match="linear_3.weight"):
        load_pretrained(str(tmp_path))


def test_multi_layer_features_are_refused(saved, tmp_path):
    _, _, path, _, _ = saved
    hf = json.load(open(os.path.join(path, "config.json")))
    hf["vision_feature_layer"] = [-2, -1]
    (tmp_path / "config.json").write_text(json.dumps(hf))
    os.symlink(os.path.join(path, "model.safetensors"), tmp_path / "model.safetensors")
    with pytest.raises(ConversionError, match="several layers"):
        load_pretrained(str(tmp_path))


def test_sparse_llava15_config_gets_transformers_defaults():
    from jaxlvlm.convert.llava import llava_config_from_hf

    # The shape of llava-hf/llava-1.5-7b-hf's config.json: sub-configs list only non-default fields.
    hf = {
        "architectures": ["LlavaForConditionalGeneration"],
        "image_token_index": 32000,
        "model_type": "llava",
        "projector_hidden_act": "gelu",
        "text_config": {
            "architectures": ["LlamaForCausalLM"],
            "max_position_embeddings": 4096,
            "model_type": "llama",
            "rms_norm_eps": 1e-05,
            "vocab_size": 32064,
        },
        "vision_config": {
            "hidden_size": 1024,
            "image_size": 336,
            "intermediate_size": 4096,
            "model_type": "clip_vision_model",
            "num_attention_heads": 16,
            "num_hidden_layers": 24,
            "patch_size": 14,
            "projection_dim": 768,
        },
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
    }
    cfg = llava_config_from_hf(hf)
    t, v = cfg.text, cfg.vision
    assert (t.vocab_size, t.hidden_size, t.intermediate_size, t.num_layers) == (
        32064,
        4096,
        11008,
        32,
    )
    assert (t.num_heads, t.num_kv_heads, t.rms_norm_eps, t.max_position_embeddings) == (
        32,
        32,
        1e-5,
        4096,
    )
    assert (v.style, v.hidden_size, v.num_layers, v.image_size, v.patch_size) == (
        "clip",
        1024,
        24,
        336,
        14,
    )
    assert v.act == "quick_gelu" and v.layer_norm_eps == 1e-5
    assert cfg.image_token_id == 32000 and cfg.image_tokens_per_image == 576
