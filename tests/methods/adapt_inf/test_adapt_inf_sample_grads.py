"""Per-sample LoRA gradients with vmap(grad) against a numpy softmax-regression reference."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxlvlm.methods.adapt_inf.projection import rademacher_project
from jaxlvlm.methods.adapt_inf.sample_grads import (
    answer_nll,
    flatten_per_sample,
    per_sample_grads,
    per_sample_grads_loop,
    sample_vectors,
)

B, L, D, V, R = 4, 6, 8, 11, 2


def _setup():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(D, V)).astype(np.float32)
    lora = {
        "a": rng.normal(size=(D, R)).astype(np.float32) * 0.3,
        "b": rng.normal(size=(R, V)).astype(np.float32) * 0.3,
    }
    batch = {
        "x": rng.normal(size=(B, L, D)).astype(np.float32),
        "targets": rng.integers(0, V, size=(B, L)).astype(np.int32),
        "loss_mask": (rng.random((B, L)) > 0.4).astype(np.float32),
    }
    batch["loss_mask"][0] = 0.0  # a sample with no answer tokens: gradient 0, no NaN
    return w0, lora, batch


def _loss(w0):
    def loss_fn(lora, sample):
        logits = sample["x"] @ (w0 + lora["a"] @ lora["b"])
        return answer_nll(logits, sample["targets"], sample["loss_mask"])

    return loss_fn


def _numpy_grads(w0, lora, batch):
    out_a, out_b = [], []
    for i in range(B):
        x, y, m = batch["x"][i].astype(np.float64), batch["targets"][i], batch["loss_mask"][i]
        w = w0 + lora["a"] @ lora["b"]
        z = x @ w
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        dz = (p - np.eye(V)[y]) * m[:, None] / max(m.sum(), 1.0)
        dw = x.T @ dz
        out_a.append(dw @ lora["b"].T)
        out_b.append(lora["a"].T @ dw)
    return np.stack(out_a), np.stack(out_b)


def test_vmapped_grads_match_numpy_and_loop():
    w0, lora, batch = _setup()
    grads = per_sample_grads(_loss(w0), lora, batch)
    ref_a, ref_b = _numpy_grads(w0, lora, batch)
    np.testing.assert_allclose(np.asarray(grads["a"]), ref_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(grads["b"]), ref_b, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(grads["a"][0]) == 0)
    loop = per_sample_grads_loop(_loss(w0), lora, batch)
    np.testing.assert_allclose(np.asarray(loop["a"]), ref_a, rtol=1e-5, atol=1e-6)


def test_sample_vectors_are_normalised_projections_and_grand_is_the_norm():
    w0, lora, batch = _setup()
    key = jax.random.key(1)
    u, grand = sample_vectors(_loss(w0), lora, batch, key, dim=32, block_k=16, block_p=20)
    ref_a, ref_b = _numpy_grads(w0, lora, batch)
    # flatten order = tree_leaves order of {'a','b'}: a then b.
    g = np.concatenate([ref_a.reshape(B, -1), ref_b.reshape(B, -1)], axis=1)
    np.testing.assert_allclose(np.asarray(grand), np.linalg.norm(g, axis=1), rtol=1e-5, atol=1e-6)
    proj = np.asarray(rademacher_project(jnp.asarray(g, jnp.float32), key, 32, 16, 20))
    norms = np.linalg.norm(proj, axis=1, keepdims=True)
    expect = np.where(norms > 0, proj / np.maximum(norms, 1e-12), 0.0)
    np.testing.assert_allclose(np.asarray(u), expect, rtol=1e-5, atol=1e-6)
    assert np.asarray(flatten_per_sample({"a": jnp.ones((B, 2, 3))})).shape == (B, 6)
