"""The hand-written attention backward (models/attention_core.py) against float64 gradients and
against JAX's autodiff of the same forward, with grouped heads, padding, a row with every key masked,
a query offset (the query blocks) and bfloat16 compute."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlvlm.models.attention import attend
from jaxlvlm.models.attention_core import softmax_attention, visible


def _float64_attention(qh, kh, vh, mask, groups):
    """The same attention in float64 numpy-free jax (x64 enabled by the caller), masked keys -inf
    except for rows with none visible (uniform over all keys, as the -1e30 fill gives)."""
    b, kv, glq, d = qh.shape
    s = jnp.einsum("bkqd,bktd->bkqt", qh, kh) / np.sqrt(d)
    s = s.reshape(b, kv, groups, glq // groups, -1)
    s = jnp.where(mask, s, -1e30)
    p = jax.nn.softmax(s, axis=-1).reshape(b, kv, glq, -1)
    return jnp.einsum("bkqt,bktd->bkqd", p, vh)


def _inputs(b=2, kv=2, groups=3, lq=10, lk=14, d=8, seed=0):
    rng = np.random.RandomState(seed)
    qh = rng.normal(size=(b, kv, groups * lq, d))
    kh = rng.normal(size=(b, kv, lk, d))
    vh = rng.normal(size=(b, kv, lk, d))
    ct = rng.normal(size=(b, kv, groups * lq, d))
    # Row 0 sees 11 keys, row 1 none: its probabilities are uniform and its gradients must not leak
    # into the masked scores.
    key_mask = np.arange(lk)[None] < np.array([[11], [0]])
    return qh, kh, vh, ct, key_mask


@pytest.mark.parametrize("custom", [True, False], ids=["custom_vjp", "autodiff"])
@pytest.mark.parametrize("causal,offset", [(False, 0), (True, 4)], ids=["padded", "causal_block"])
def test_backward_matches_float64_gradients(causal, offset, custom):
    qh, kh, vh, ct, key_mask = _inputs()
    groups, lq, lk = 3, 10, 14

    def loss(fn, dtype):
        def f(q, k, v):
            return jnp.vdot(fn(q, k, v), jnp.asarray(ct, dtype))

        return f

    ours = loss(
        lambda q, k, v: softmax_attention(
            q,
            k,
            v,
            jnp.asarray(key_mask),
            groups=groups,
            causal=causal,
            query_offset=offset,
            custom_vjp=custom,
        ),
        jnp.float32,
    )
    args32 = [jnp.asarray(x, jnp.float32) for x in (qh, kh, vh)]
    got_out = softmax_attention(
        *args32,
        jnp.asarray(key_mask),
        groups=groups,
        causal=causal,
        query_offset=offset,
        custom_vjp=custom,
    )
    got = jax.jit(jax.grad(ours, argnums=(0, 1, 2)))(*args32)
    with jax.enable_x64(True):
        mask = visible(jnp.asarray(key_mask), lq, lk, causal, offset)
        ref = loss(lambda q, k, v: _float64_attention(q, k, v, mask, groups), jnp.float64)
        args64 = [jnp.asarray(x, jnp.float64) for x in (qh, kh, vh)]
        want_out = np.asarray(_float64_attention(*args64, mask, groups))
        want = [np.asarray(g) for g in jax.grad(ref, argnums=(0, 1, 2))(*args64)]
    np.testing.assert_allclose(np.asarray(got_out), want_out, atol=2e-6)
    for name, a, w in zip("qkv", got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), w, atol=5e-6, err_msg=name)
    # The all-masked row 1 still has value gradients (its uniform probabilities read every value).
    assert np.abs(np.asarray(got[2])[1]).max() > 0.1


@pytest.mark.parametrize("blocks", [1, 2])
def test_attend_with_and_without_custom_backward_agree(blocks):
    """The whole 'xla' attention (GQA layout, query blocks) gives the same outputs and gradients
    either way, to float32 rounding."""
    rng = np.random.RandomState(3)
    q = jnp.asarray(rng.normal(size=(2, 64, 4, 16)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(2, 64, 2, 16)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(2, 64, 2, 16)), jnp.float32)
    ct = jnp.asarray(rng.normal(size=q.shape), jnp.float32)
    key_mask = jnp.arange(64)[None] < jnp.array([[64], [40]])

    def loss(custom):
        def f(q, k, v):
            out = attend(q, k, v, key_mask, causal=True, query_blocks=blocks, custom_vjp=custom)
            return jnp.vdot(out, ct)

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))

    (val_a, grads_a), (val_b, grads_b) = loss(True)(q, k, v), loss(False)(q, k, v)
    np.testing.assert_allclose(float(val_a), float(val_b), rtol=1e-6)
    for name, a, b in zip("qkv", grads_a, grads_b, strict=True):
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6 * scale, err_msg=name)


def test_bfloat16_compute_keeps_dtypes_and_tracks_float32():
    qh, kh, vh, ct, key_mask = _inputs(seed=1)
    mask = jnp.asarray(key_mask)

    def grads(dtype):
        def f(q, k, v):
            out = softmax_attention(
                q, k, v, mask, groups=3, causal=True, query_offset=4, custom_vjp=True
            )
            return jnp.vdot(out.astype(jnp.float32), jnp.asarray(ct, jnp.float32)), out.dtype

        args = [jnp.asarray(x, dtype) for x in (qh, kh, vh)]
        return jax.grad(f, argnums=(0, 1, 2), has_aux=True)(*args)

    (g16, out_dtype), (g32, _) = grads(jnp.bfloat16), grads(jnp.float32)
    assert out_dtype == jnp.bfloat16
    for name, a, b in zip("qkv", g16, g32, strict=True):
        assert a.dtype == jnp.bfloat16, name
        # bfloat16 keeps 8 bits of mantissa: agreement to a few percent of the gradient's scale.
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(
            np.asarray(a, np.float32), np.asarray(b), atol=0.05 * scale, err_msg=name
        )
