"""ViT tower: per-layer parity with transformers' CLIP/SigLIP encoder layers, scan/remat equivalence,
and clear errors for bad inputs."""

import jax
import numpy as np
import pytest
import torch
from flax import linen as nn
from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

from jaxlvlm.convert.hf_io import TensorSource
from jaxlvlm.convert.vision import vision_config_from_hf, vision_params_from_hf
from jaxlvlm.models.config import RuntimeConfig, VisionConfig
from jaxlvlm.models.vit import VisionTower, ViTLayer

HF = {
    "clip": (CLIPVisionConfig, CLIPVisionModel),
    "siglip": (SiglipVisionConfig, SiglipVisionModel),
}


def _hf_model(style):
    torch.manual_seed(0)
    cfg_cls, model_cls = HF[style]
    hf_cfg = cfg_cls(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    model = model_cls(hf_cfg).eval()
    # Non-trivial layer norms so a swapped scale/bias would show.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("style", ["clip", "siglip"])
def test_vit_layer_matches_transformers(style):
    model = _hf_model(style)
    cfg = vision_config_from_hf(model.config.to_dict() | {"model_type": model.config.model_type})
    src = TensorSource({k: v.numpy() for k, v in model.state_dict().items()}, "state_dict")
    params = vision_params_from_hf(cfg, src)["layers_0"]
    x = np.random.default_rng(0).standard_normal((2, 17, 32)).astype(np.float32)
    with torch.no_grad():
        want = model.encoder.layers[0](torch.from_numpy(x), None).numpy()
    got = ViTLayer(cfg, RuntimeConfig()).apply({"params": params}, x)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("remat", ["none", "full", "dots"])
def test_scan_and_remat_equal_plain_loop(remat):
    cfg = VisionConfig(style="clip", hidden_size=32, intermediate_size=64, num_layers=3)
    x = np.random.default_rng(1).standard_normal((2, 32, 32, 3)).astype(np.float32)
    plain = VisionTower(cfg, RuntimeConfig())
    params = nn.unbox(plain.init(jax.random.key(0), x[:1]))["params"]
    scanned = VisionTower(cfg, RuntimeConfig(scan_layers=True, remat_vision=remat))
    stacked = {k: v for k, v in params.items() if not k.startswith("layers_")}
    stacked["layers"] = {
        "layer": jax.tree.map(lambda *a: np.stack(a), *[params[f"layers_{i}"] for i in range(3)])
    }
    plain_fn = jax.jit(plain.apply, static_argnames="feature_layer")
    scanned_fn = jax.jit(scanned.apply, static_argnames="feature_layer")
    for layer in (None, 0, 1, -2):
        want = plain_fn({"params": params}, x, feature_layer=layer)
        got = scanned_fn({"params": stacked}, x, feature_layer=layer)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6, rtol=0)


def test_hidden_layer_skips_later_layers():
    """Features from layer 1 of 3 must not depend on layer 2's (or 3's) weights."""
    cfg = VisionConfig(style="siglip", hidden_size=32, intermediate_size=64, num_layers=3)
    x = np.random.default_rng(2).standard_normal((1, 32, 32, 3)).astype(np.float32)
    tower = VisionTower(cfg)
    params = nn.unbox(tower.init(jax.random.key(0), x))["params"]
    assert set(params) >= {"layers_0", "layers_1", "layers_2", "post_layernorm"}
    base = tower.apply({"params": params}, x, feature_layer=1)
    changed = dict(params, layers_1=jax.tree.map(lambda a: a + 1.0, params["layers_1"]))
    np.testing.assert_array_equal(
        np.asarray(tower.apply({"params": changed}, x, feature_layer=1)), base
    )
    assert not np.allclose(tower.apply({"params": changed}, x, feature_layer=2), base)


def test_bad_inputs_are_named():
    cfg = VisionConfig(hidden_size=32, intermediate_size=64, num_layers=2)
    tower = VisionTower(cfg)
    with pytest.raises(ValueError, match=r"image shape \(16, 16, 3\)"):
        tower.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))
    params = tower.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))["params"]
    with pytest.raises(ValueError, match="out of range for 2 layers"):
        tower.apply({"params": params}, np.zeros((1, 32, 32, 3), np.float32), feature_layer=3)
