"""GGUF import: tensors and config equal what transformers reads from the same file."""

from __future__ import annotations

import os

import numpy as np
import pytest
from gguf_fixtures import llama_cpp_permute, smollm2_gguf_path, write_tiny_llama_gguf

from jaxlvlm.convert.gguf import gguf_to_hf, unpermute_qk
from jaxlvlm.convert.hf_io import ConversionError

TINY = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    rope_theta=5000.0,
    rms_norm_eps=1e-5,
    max_position_embeddings=128,
)


def _transformers_state(folder: str, name: str):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    return model.config, {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _assert_config_matches(cfg: dict, ref) -> None:
    for key in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "max_position_embeddings",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
    ):
        assert cfg[key] == getattr(ref, key), key
    assert cfg["rms_norm_eps"] == pytest.approx(ref.rms_norm_eps, rel=1e-7)
    assert cfg["rope_theta"] == ref.rope_parameters["rope_theta"]
    assert cfg["rope_parameters"]["rope_theta"] == ref.rope_parameters["rope_theta"]


def test_unpermute_inverts_llama_cpp_permutation():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3 * 8, 5)).astype(np.float32)
    np.testing.assert_array_equal(unpermute_qk(llama_cpp_permute(w, 3), 3), w)
    b = rng.normal(size=(3 * 8,)).astype(np.float32)
    np.testing.assert_array_equal(unpermute_qk(llama_cpp_permute(b, 3), 3), b)
    # It is a real permutation, not the identity.
    assert not np.array_equal(llama_cpp_permute(w, 3), w)


@pytest.mark.parametrize("tied", [False, True])
def test_tiny_gguf_matches_transformers_and_source(tmp_path, tied):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**TINY, tie_word_embeddings=tied))
    src = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    path = str(tmp_path / "tiny.gguf")
    write_tiny_llama_gguf(path, src, TINY, tied=tied)

    cfg, tensors = gguf_to_hf(path)
    ref_cfg, ref = _transformers_state(str(tmp_path), "tiny.gguf")
    _assert_config_matches(cfg, ref_cfg)
    assert cfg["tie_word_embeddings"] is tied
    assert ("lm_head.weight" in tensors) is (not tied)

    expected_keys = set(ref) - ({"lm_head.weight"} if tied else set())
    assert set(tensors) == expected_keys
    for key, arr in tensors.items():
        assert arr.dtype == np.float32, key
        # transformers dequantises with the same gguf code: bit-identical.
        np.testing.assert_array_equal(arr, ref[key], err_msg=key)
        if "up_proj" in key or key == "lm_head.weight":
            # Q8_0 round trip: within quantisation noise of the source (absmax/127 per block of 32).
            np.testing.assert_allclose(arr, src[key], atol=np.abs(src[key]).max() / 127 + 1e-7)
        else:
            np.testing.assert_array_equal(arr, src[key], err_msg=key)


def test_smollm2_tensors_and_config_match_transformers():
    path = smollm2_gguf_path()
    cfg, tensors = gguf_to_hf(path)
    ref_cfg, ref = _transformers_state(os.path.dirname(path), os.path.basename(path))
    _assert_config_matches(cfg, ref_cfg)
    assert cfg["num_hidden_layers"] == 30 and cfg["hidden_size"] == 576
    assert cfg["tie_word_embeddings"] is True
    assert cfg["pad_token_id"] == ref_cfg.pad_token_id
    # transformers' state dict lists the tied lm_head too; the file has no output.weight.
    assert set(tensors) == set(ref) - {"lm_head.weight"}
    for key, arr in tensors.items():
        assert arr.shape == ref[key].shape, key
        np.testing.assert_array_equal(arr, ref[key], err_msg=key)


def _write_minimal(path: str, arch: str) -> None:
    import gguf

    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_non_llama_architecture_is_named(tmp_path):
    path = str(tmp_path / "model.gguf")
    _write_minimal(path, "gpt2")
    with pytest.raises(ConversionError) as err:
        gguf_to_hf(path)
    msg = str(err.value)
    assert path in msg and "'gpt2'" in msg and "llama" in msg


def test_corrupt_and_missing_files_are_named(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"this is not a gguf file at all" * 10)
    with pytest.raises(ConversionError, match="broken.gguf.*not a readable GGUF"):
        gguf_to_hf(str(bad))
    # A real header cut short.
    good = str(tmp_path / "ok.gguf")
    _write_minimal(good, "llama")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(open(good, "rb").read()[:40])
    with pytest.raises(ConversionError, match="truncated.gguf"):
        gguf_to_hf(str(truncated))
    with pytest.raises(ConversionError, match="no such GGUF file"):
        gguf_to_hf(str(tmp_path / "absent.gguf"))


def test_incomplete_llama_file_names_missing_metadata(tmp_path):
    path = str(tmp_path / "partial.gguf")
    _write_minimal(path, "llama")
    with pytest.raises(ConversionError, match="partial.gguf.*llama.embedding_length"):
        gguf_to_hf(path)
