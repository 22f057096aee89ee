"""Bare CLIPVisionModel / SiglipVisionModel through load_pretrained against transformers: the tower's
last_hidden_state within 1e-5, the older 'vision_model.' layout, export round trip, unused tensors."""

import logging
import os

import jax
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

from jaxlvlm.convert import ConversionError, load_pretrained, save_pretrained_hf
from jaxlvlm.models import build_model

HF = {
    "clip": (CLIPVisionConfig, CLIPVisionModel),
    "siglip": (SiglipVisionConfig, SiglipVisionModel),
}


@pytest.fixture(scope="module", params=sorted(HF))
def saved(request, tmp_path_factory):
    style = request.param
    cfg_cls, model_cls = HF[style]
    torch.manual_seed(0)
    model = model_cls(
        cfg_cls(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            attn_implementation="eager",
        )
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp(style)
    model.save_pretrained(path)
    pixels = np.random.default_rng(0).standard_normal((3, 32, 32, 3)).astype(np.float32)
    return style, model, str(path), pixels


def _hf(model, pixels):
    with torch.no_grad():
        return model(
            torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy())
        ).last_hidden_state.numpy()


def _ours(path, pixels):
    cfg, params = load_pretrained(path)
    return cfg, params, np.asarray(jax.jit(build_model(cfg).apply)({"params": params}, pixels))


def test_bare_tower_matches_transformers(saved):
    style, model, path, pixels = saved
    cfg, _, got = _ours(path, pixels)
    assert cfg.style == style
    np.testing.assert_allclose(got, _hf(model, pixels), atol=1e-5, rtol=0)


def test_older_vision_model_layout(saved, tmp_path):
    _, model, path, pixels = saved
    tensors = load_file(os.path.join(path, "model.safetensors"))
    save_file(
        {f"vision_model.{k}": v for k, v in tensors.items()}, str(tmp_path / "model.safetensors")
    )
    (tmp_path / "config.json").write_text(open(os.path.join(path, "config.json")).read())
    _, _, got = _ours(str(tmp_path), pixels)
    np.testing.assert_allclose(got, _hf(model, pixels), atol=1e-5, rtol=0)


def test_export_round_trip(saved, tmp_path):
    style, model, path, pixels = saved
    cfg, params = load_pretrained(path)
    save_pretrained_hf(cfg, params, str(tmp_path))
    reloaded = HF[style][1].from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    np.testing.assert_allclose(_hf(reloaded, pixels), _hf(model, pixels), atol=1e-5, rtol=0)


def test_unused_tensors_are_named(saved, caplog):
    style, _, path, _ = saved
    with caplog.at_level(logging.WARNING, logger="jaxlvlm.convert.api"):
        load_pretrained(path)
    assert ("head.probe" if style == "siglip" else "post_layernorm.weight") in caplog.text


def test_mis_shaped_position_embedding(saved, tmp_path):
    _, _, path, _ = saved
    tensors = load_file(os.path.join(path, "model.safetensors"))
    key = "embeddings.position_embedding.weight"
    tensors[key] = np.concatenate([tensors[key], tensors[key][:1]])
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(open(os.path.join(path, "config.json")).read())
    with pytest.raises(
        ConversionError, match=r"position_embedding.weight' has shape \(\d+, 32\), expected"
    ):
        load_pretrained(str(tmp_path))
