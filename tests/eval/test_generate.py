"""greedy_generate (prefill + KV-cache decode) equals step-by-step argmax over full forwards, per row,
on a tiny LVLM whose rows have different prompt lengths and image counts; rows stop at eos."""

import jax
import numpy as np
import pytest
from flax import linen as nn

from jaxlvlm.eval.generate import greedy_generate
from jaxlvlm.models import build_model
from jaxlvlm.models.config import LVLMConfig, TextConfig, VisionConfig

CONFIG = LVLMConfig(
    vision=VisionConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4),
    text=TextConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
    ),
    image_token_id=3,
)
NEW = 6
PAD = 0


@pytest.fixture(scope="module")
def setup():
    model = build_model(CONFIG)
    rng = np.random.default_rng(0)
    t = CONFIG.image_tokens_per_image
    prompts = [
        [5, 6] + [3] * t + [7, 8, 9],  # one image
        list(rng.integers(4, 64, size=7)),  # text only, shortest
        [10] + [3] * t + [11] + [3] * t + [12, 13],  # two images, longest
    ]
    length = max(map(len, prompts))
    ids = np.zeros((3, length), np.int32)
    mask = np.zeros((3, length), np.int32)
    for i, p in enumerate(prompts):
        ids[i, : len(p)], mask[i, : len(p)] = p, 1
    batch = dict(
        input_ids=ids,
        attention_mask=mask,
        pixel_values=rng.standard_normal((3, 2, 32, 32, 3)).astype(np.float32),
        num_images=np.array([1, 0, 2], np.int32),
    )
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), ids[:, :4]))["params"]
    # Larger embeddings make the argmax decisive, so float noise cannot flip a token.
    params["llm"]["embed_tokens"]["embedding"] *= 50.0
    return model, params, batch, [len(p) for p in prompts]


def _reference(model, params, batch, lengths, eos_id):
    """Appends one argmax token per row per step and reruns the full forward each time."""
    b, length = batch["input_ids"].shape
    ids = np.zeros((b, length + NEW), np.int32)
    ids[:, :length] = batch["input_ids"]
    forward = jax.jit(
        lambda ids, mask: model.apply(
            {"params": params}, ids, mask, batch["pixel_values"], batch["num_images"]
        )
    )
    out = np.full((b, NEW), PAD, np.int32)
    cur = list(lengths)
    done = [False] * b
    for step in range(NEW):
        mask = (np.arange(length + NEW)[None] < np.array(cur)[:, None]).astype(np.int32)
        logits = np.asarray(forward(ids, mask))
        for r in range(b):
            if done[r]:
                continue
            tok = int(np.argmax(logits[r, cur[r] - 1]))
            out[r, step] = tok
            ids[r, cur[r]] = tok
            cur[r] += 1
            done[r] = tok == eos_id
    return out


def test_greedy_generate_equals_stepwise_full_forward(setup):
    model, params, batch, lengths = setup
    free = np.asarray(greedy_generate(model, params, batch, NEW, eos_id=-1, pad_id=PAD))
    assert free.shape == (3, NEW)
    np.testing.assert_array_equal(free, _reference(model, params, batch, lengths, eos_id=-1))
    # The rows must not all continue alike, or the per-row bookkeeping would go untested.
    assert len({tuple(r) for r in free}) > 1

    # Stop row 0 at its third token: later tokens of that row become padding, other rows go on
    # unless they emit the same token.
    eos = int(free[0, 2])
    stopped = np.asarray(greedy_generate(model, params, batch, NEW, eos_id=eos, pad_id=PAD))
    np.testing.assert_array_equal(stopped, _reference(model, params, batch, lengths, eos_id=eos))
    assert stopped[0, 2] == eos and (stopped[0, 3:] == PAD).all()


def test_text_only_model_and_bad_length(setup):
    model, params, batch, _ = setup
    text_model = build_model(CONFIG.text)
    text_batch = {k: batch[k][1:2] for k in ("input_ids", "attention_mask")}
    tokens = greedy_generate(text_model, params["llm"], text_batch, 3, eos_id=-1, pad_id=PAD)
    assert tokens.shape == (1, 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_generate(model, params, batch, 0, eos_id=-1, pad_id=PAD)


def test_prefill_logits_at_equals_full_prefill(setup):
    """The prefill's LM head at given positions equals the full [B, L, V] logits gathered there,
    for right-padded rows of different lengths, LVLM and text-only model."""
    model, params, batch, lengths = setup
    last = np.array(lengths, np.int32) - 1
    extra = {k: batch[k] for k in ("pixel_values", "num_images")}

    def prefill(at):
        return model.apply(
            {"params": params},
            batch["input_ids"],
            batch["attention_mask"],
            max_length=batch["input_ids"].shape[1] + 2,
            logits_at=at,
            method="prefill",
            **extra,
        )

    full, cache_full = jax.jit(lambda: prefill(None))()
    at, cache_at = jax.jit(prefill)(last)
    assert at.shape == (3, CONFIG.text.vocab_size)
    np.testing.assert_allclose(at, np.asarray(full)[np.arange(3), last], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(cache_at.k, cache_full.k)
    np.testing.assert_array_equal(cache_at.length, cache_full.length)

    text_model = build_model(CONFIG.text)
    ids, mask = batch["input_ids"][1:2], batch["attention_mask"][1:2]
    full_t, _ = text_model.apply(
        {"params": params["llm"]}, ids, mask, max_length=ids.shape[1], method="prefill"
    )
    at_t, _ = text_model.apply(
        {"params": params["llm"]},
        ids,
        mask,
        max_length=ids.shape[1],
        logits_at=last[1:2],
        method="prefill",
    )
    np.testing.assert_allclose(at_t[0], full_t[0, last[1]], rtol=1e-6, atol=1e-6)


def test_generation_compiles_once_per_shape(setup):
    """New prompts of the same shapes reuse the compiled program; a new batch size compiles once
    more."""
    from jaxlvlm.eval import generate as G

    model, params, batch, _ = setup
    greedy_generate(model, params, batch, 3, eos_id=-1, pad_id=PAD)
    n = G._generate._cache_size()
    ids = batch["input_ids"]
    other = dict(batch, input_ids=np.where(ids == 3, 3, (ids - 3) % 60 + 4).astype(np.int32))
    greedy_generate(model, params, other, 3, eos_id=-1, pad_id=PAD)
    assert G._generate._cache_size() == n
    greedy_generate(model, params, {k: v[:2] for k, v in batch.items()}, 3, eos_id=-1, pad_id=PAD)
    assert G._generate._cache_size() == n + 1
