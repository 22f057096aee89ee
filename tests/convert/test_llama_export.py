"""Export: our params -> HF directory -> transformers loads it -> same logits (1e-5); and HF -> ours -> HF
gives back exactly the tensors we read."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen as nn
from llama_hf_tiny import make_hf_model, padded_batch

from jaxlvlm.convert.hf_io import TensorSource, read_safetensors_dir
from jaxlvlm.convert.llama import (
    decoder_params_from_hf,
    decoder_params_to_hf,
    load_hf_causal_lm,
    save_hf_causal_lm,
)
from jaxlvlm.models.config import RuntimeConfig, TextConfig
from jaxlvlm.models.decoder import CausalLM

torch.set_float32_matmul_precision("highest")

BASE = TextConfig(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    rope_theta=20000.0,
)
CONFIGS = {
    "llama_untied": BASE,
    "llama_tied_llama3": dataclasses.replace(
        BASE,
        tie_word_embeddings=True,
        rope_scaling=(
            ("factor", 4.0),
            ("high_freq_factor", 4.0),
            ("low_freq_factor", 1.0),
            ("original_max_position_embeddings", 32),
            ("rope_type", "llama3"),
        ),
    ),
    "qwen2": dataclasses.replace(BASE, arch="qwen2", attention_bias=True),
    # Llama's attention_bias puts a bias on o_proj as well; mlp_bias on gate/up/down.
    "llama_biases": dataclasses.replace(BASE, attention_bias=True, mlp_bias=True),
}


def _random_params(cfg: TextConfig, scan: bool):
    """Random params of the model's shapes (numpy, seeded): norm scales near 1, everything else small
    and nonzero, so zero biases or unit scales cannot hide a mapping error. Shapes come from
    eval_shape(init), which avoids compiling the random initialisers."""
    ids = jnp.zeros((1, 4), jnp.int32)
    model = CausalLM(cfg, RuntimeConfig(scan_layers=scan))
    shapes = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), ids))["params"]
    rng = np.random.RandomState(0)

    def fill(path, leaf):
        noise = rng.normal(size=leaf.shape).astype(np.float32)
        is_scale = path[-1].key == "scale"
        return jnp.asarray(1.0 + 0.1 * noise if is_scale else 0.1 * noise)

    return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.mark.parametrize(
    "name,scan", [(n, False) for n in sorted(CONFIGS)] + [("llama_tied_llama3", True)]
)
def test_export_loads_in_transformers_with_same_logits(name, scan, tmp_path):
    import transformers

    cfg = CONFIGS[name]
    params = _random_params(cfg, scan)
    out = tmp_path / "hf"
    save_hf_causal_lm(cfg, params, str(out))
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(out), attn_implementation="eager", dtype=torch.float32
    ).eval()
    ids, mask = padded_batch([40, 29], 40, seed=5)
    ids = ids % cfg.vocab_size
    ours = CausalLM(cfg, RuntimeConfig(scan_layers=scan)).apply(
        {"params": params}, jnp.asarray(ids), jnp.asarray(mask)
    )
    with torch.no_grad():
        ref = model(
            torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long()
        ).logits
    valid = mask.astype(bool)
    err = np.abs(np.asarray(ours) - ref.numpy())[valid].max()
    assert err < 1e-5, f"{name}: max abs logit difference {err}"
    # And back: the exported directory loads into the same parameters.
    cfg2, params2 = load_hf_causal_lm(str(out), scan=scan)
    assert cfg2 == cfg
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, params2
    )


@pytest.mark.parametrize("case", ["llama_untied_mha", "qwen2_gqa"])
def test_hf_tensors_survive_a_round_trip_exactly(case, tmp_path):
    model = make_hf_model(case)
    model.save_pretrained(str(tmp_path))
    cfg, params = load_hf_causal_lm(str(tmp_path), scan=True)
    tensors = read_safetensors_dir(str(tmp_path))
    back = decoder_params_to_hf(cfg, params)
    assert sorted(back) == sorted(tensors)
    for key, value in tensors.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_prefixes_are_parameters():
    """LLaVA nests the LLM: the same mapping reads and writes under any prefix and head key."""
    cfg = CONFIGS["qwen2"]
    params = _random_params(cfg, scan=False)
    tensors = decoder_params_to_hf(
        cfg, params, prefix="language_model.model.", lm_head_key="language_model.lm_head.weight"
    )
    assert all(k.startswith("language_model.") for k in tensors)
    src = TensorSource(tensors, origin="nested")
    again = decoder_params_from_hf(
        cfg, src, prefix="language_model.model.", lm_head_key="language_model.lm_head.weight"
    )
    assert src.unused() == []
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, again
    )
