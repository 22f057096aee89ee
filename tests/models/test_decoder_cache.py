"""Generation path: prefill of right-padded prompts of different lengths + single-token decode steps give
the same logits as one full forward over the finished sequences (each row continuing right after its
own last prompt token), with and without scan and low-rank hooks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_decoder import GQA, QWEN_TIED, random_params, stack_layers

from jaxlvlm.models.config import RuntimeConfig
from jaxlvlm.models.decoder import CausalLM
from jaxlvlm.models.lowrank import LowRankFactors, lowrank_dims

PROMPT_LENGTHS = [9, 5]
PROMPT = 9
STEPS = 4


def _lowrank(cfg, batch):
    rng = np.random.RandomState(7)
    out = {}
    for target in ("q_proj", "v_proj", "o_proj", "down_proj"):
        d_in, d_out = lowrank_dims(cfg)[target]
        out[target] = LowRankFactors(
            a=jnp.asarray(0.2 * rng.normal(size=(cfg.num_layers, 2, d_in, 3)), jnp.float32),
            b=jnp.asarray(0.2 * rng.normal(size=(cfg.num_layers, 2, 3, d_out)), jnp.float32),
            coeff=jnp.asarray(rng.uniform(size=(batch, 2)), jnp.float32),
        )
    return out


@pytest.mark.parametrize(
    "name,scan,hooks",
    [("llama_gqa", False, False), ("llama_gqa", True, True), ("qwen2_tied_mqa", True, False)],
)
def test_prefill_then_decode_equals_full_forward(name, scan, hooks):
    cfg = {"llama_gqa": GQA, "qwen2_tied_mqa": QWEN_TIED}[name]
    params = random_params(cfg)
    if scan:
        params = stack_layers(params, cfg.num_layers)
    model = CausalLM(cfg, RuntimeConfig(scan_layers=scan))
    batch = len(PROMPT_LENGTHS)
    lowrank = _lowrank(cfg, batch) if hooks else None
    rng = np.random.RandomState(3)
    prompt_ids = rng.randint(1, cfg.vocab_size, size=(batch, PROMPT)).astype(np.int32)
    prompt_mask = (np.arange(PROMPT)[None] < np.asarray(PROMPT_LENGTHS)[:, None]).astype(np.int32)
    prompt_ids *= prompt_mask
    new_tokens = rng.randint(1, cfg.vocab_size, size=(batch, STEPS)).astype(np.int32)

    # The finished sequences, right-padded: prompt_b[:len_b] followed by the generated tokens.
    total = PROMPT + STEPS
    full_ids = np.zeros((batch, total), np.int32)
    full_mask = np.zeros((batch, total), np.int32)
    for b, n in enumerate(PROMPT_LENGTHS):
        full_ids[b, :n] = prompt_ids[b, :n]
        full_ids[b, n : n + STEPS] = new_tokens[b]
        full_mask[b, : n + STEPS] = 1

    apply = jax.jit(
        lambda p, *a, **kw: model.apply({"params": p}, *a, lowrank=lowrank, **kw),
        static_argnames=("method", "max_length"),
    )
    full = np.asarray(apply(params, full_ids, full_mask))
    prefill_logits, cache = apply(
        params, prompt_ids, prompt_mask, method="prefill", max_length=total
    )
    assert len(cache.k) == len(cache.v) == cfg.num_layers
    for buf in cache.k + cache.v:
        assert buf.shape == (batch, cfg.num_kv_heads, total, cfg.resolved_head_dim)
    np.testing.assert_array_equal(np.asarray(cache.length), PROMPT_LENGTHS)
    for b, n in enumerate(PROMPT_LENGTHS):
        np.testing.assert_allclose(
            np.asarray(prefill_logits[b, :n]), full[b, :n], rtol=0, atol=1e-5
        )
    for t in range(STEPS):
        step_logits, cache = apply(params, jnp.asarray(new_tokens[:, t]), cache, method="decode")
        assert step_logits.shape == (batch, cfg.vocab_size)
        for b, n in enumerate(PROMPT_LENGTHS):
            np.testing.assert_allclose(
                np.asarray(step_logits[b]), full[b, n + t], rtol=0, atol=1e-5, err_msg=f"step {t}"
            )
    np.testing.assert_array_equal(np.asarray(cache.length), np.asarray(PROMPT_LENGTHS) + STEPS)


def test_prefill_needs_room_in_the_cache():
    params = random_params(GQA)
    ids = jnp.ones((1, 6), jnp.int32)
    with pytest.raises(ValueError, match="max_length"):
        CausalLM(GQA).apply({"params": params}, ids, ids, method="prefill", max_length=4)
