"""Public conversion API: dispatch by architecture, refusals with named errors, converted (orbax)
checkpoints and the convert_checkpoint tool."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxlvlm.convert import (
    ConversionError,
    load_converted,
    load_pretrained,
    save_converted,
    save_pretrained_hf,
)
from jaxlvlm.models import build_model
from jaxlvlm.models.config import LVLMConfig, TextConfig, VisionConfig
from jaxlvlm.models.sharded_init import abstract_params

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = LVLMConfig(
    vision=VisionConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4),
    text=TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4),
)


@pytest.fixture(scope="module")
def lvlm_dir(tmp_path_factory):
    from flax import linen as nn

    model = build_model(CONFIG)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), np.zeros((1, 4), np.int32)))["params"]
    path = tmp_path_factory.mktemp("lvlm_hf")
    save_pretrained_hf(CONFIG, params, str(path))
    return str(path), jax.device_get(params)


def test_load_pretrained_dispatches_on_architecture(lvlm_dir, tmp_path):
    path, params = lvlm_dir
    cfg, loaded = load_pretrained(path)
    assert cfg == CONFIG
    jax.tree.map(np.testing.assert_allclose, loaded, params)
    # The decoder alone, exported as LlamaForCausalLM, comes back as a TextConfig.
    save_pretrained_hf(CONFIG.text, params["llm"], str(tmp_path / "llm"))
    assert json.load(open(tmp_path / "llm" / "config.json"))["architectures"] == [
        "LlamaForCausalLM"
    ]
    text_cfg, text_params = load_pretrained(str(tmp_path / "llm"))
    assert text_cfg == CONFIG.text
    jax.tree.map(np.testing.assert_allclose, text_params, params["llm"])


def test_pickle_only_directory_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ConversionError, match="pytorch_model.bin.*Convert them to safetensors"):
        load_pretrained(str(tmp_path))
    with pytest.raises(ConversionError, match="pickle"):
        load_pretrained(str(tmp_path / "pytorch_model.bin"))


def test_unsupported_architecture_names_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["MistralForCausalLM"], "model_type": "mistral"})
    )
    with pytest.raises(ConversionError, match=r"MistralForCausalLM.*LlavaForConditionalGeneration"):
        load_pretrained(str(tmp_path))


def test_missing_path_and_missing_config(tmp_path):
    with pytest.raises(ConversionError, match="no such file"):
        load_pretrained(str(tmp_path / "nope"))
    with pytest.raises(ConversionError, match="no config.json"):
        load_pretrained(str(tmp_path))


def test_converted_checkpoint_round_trip(lvlm_dir, tmp_path):
    _, params = lvlm_dir
    save_converted(str(tmp_path / "conv"), CONFIG, params)
    meta = json.load(open(tmp_path / "conv" / "model_config.json"))
    assert meta["kind"] == "lvlm" and meta["scan_layers"] is False
    cfg, restored = load_converted(str(tmp_path / "conv"))
    assert cfg == CONFIG
    jax.tree.map(np.testing.assert_array_equal, restored, params)
    # Restoring into an abstract tree (what a trainer holds) gives the same arrays.
    from flax import linen as nn

    target = nn.unbox(abstract_params(build_model(CONFIG), CONFIG))
    _, restored = load_converted(str(tmp_path / "conv"), target)
    jax.tree.map(np.testing.assert_array_equal, restored, params)
    with pytest.raises(ConversionError, match="model_config.json"):
        load_converted(str(tmp_path))


def test_convert_checkpoint_tool(lvlm_dir, tmp_path):
    path, params = lvlm_dir
    out = tmp_path / "converted"
    run = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "tools", "convert_checkpoint.py"),
            "--src",
            path,
            "--out",
            str(out),
            "--scan_layers",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""},
    )
    assert run.returncode == 0, run.stderr
    cfg, restored = load_converted(str(out))
    assert cfg == CONFIG
    assert json.load(open(out / "model_config.json"))["scan_layers"] is True
    stacked = restored["llm"]["layers"]["mlp"]["up_proj"]["kernel"]
    np.testing.assert_array_equal(stacked[1], params["llm"]["layers_1"]["mlp"]["up_proj"]["kernel"])

    bad = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "tools", "convert_checkpoint.py"),
            "--src",
            str(tmp_path / "x.gguf"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""},
    )
    assert bad.returncode == 2 and "no such file" in bad.stderr
