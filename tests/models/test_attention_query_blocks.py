"""The default causal query blocks change the decoder's results only within float tolerance."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxlvlm.models.config import RuntimeConfig
from jaxlvlm.models.decoder import CausalLM
from tests.models.tiny_decoder import GQA, random_params, right_padded


def test_default_query_blocks_give_the_unblocked_logits_and_gradients():
    default = RuntimeConfig()
    assert default.attention_query_blocks > 1  # the default blocks; this test checks it is exact
    unblocked = dataclasses.replace(default, attention_query_blocks=1)
    params = random_params(GQA, seed=2)
    # 128 positions: four blocks of 32 queries (shorter sequences are not split as far)
    ids, mask = right_padded([128, 90], 128, GQA.vocab_size, seed=2)
    ct = jax.random.normal(jax.random.PRNGKey(0), (2, 128, GQA.vocab_size))

    def loss_and_grad(runtime):
        model = CausalLM(GQA, runtime)

        def loss(p):
            logits = model.apply({"params": p}, ids, mask)
            return jnp.vdot(logits * mask[..., None], ct), logits

        return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)

    (_, blocked_logits), blocked_grads = loss_and_grad(default)
    (_, whole_logits), whole_grads = loss_and_grad(unblocked)
    real = np.asarray(mask, bool)
    np.testing.assert_allclose(
        np.asarray(blocked_logits)[real], np.asarray(whole_logits)[real], atol=1e-5
    )
    # Gradients up to ~230 here; the blocks reassociate the softmax and value sums, so each leaf
    # may differ by float32 rounding relative to its own scale (measured: at most 6e-7 of it).
    flat_b = jax.tree_util.tree_leaves_with_path(blocked_grads)
    flat_w = jax.tree_util.tree_leaves(whole_grads)
    for (path, b), w in zip(flat_b, flat_w, strict=True):
        diff, scale = np.max(np.abs(np.asarray(b) - np.asarray(w))), np.max(np.abs(np.asarray(w)))
        assert diff <= 2e-6 * scale, (jax.tree_util.keystr(path), diff, scale)
