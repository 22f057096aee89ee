"""The attention function: the grouped-query 'xla' path vs a per-head numpy reference (values) and
jax.nn.dot_product_attention (gradients), the fused (cudnn-style) argument mapping checked through
jax's own XLA implementation, and its errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlvlm.models.attention import attend, attend_cached, causal_query_blocks, fused_attention


def _reference(q, k, v, key_mask, causal):
    """Per-head float64 attention, kv head h // (H / K) for query head h."""
    b, lq, h, d = q.shape
    lk, kv = k.shape[1], k.shape[2]
    out = np.zeros((b, lq, h, d))
    for bi in range(b):
        for hi in range(h):
            kh = hi // (h // kv)
            s = q[bi, :, hi].astype(np.float64) @ k[bi, :, kh].T.astype(np.float64) / np.sqrt(d)
            allowed = np.ones((lq, lk), bool)
            if key_mask is not None:
                allowed &= key_mask[bi][None, :]
            if causal:
                allowed &= np.tril(np.ones((lq, lk), bool))
            s = np.where(allowed, s, -np.inf)
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            out[bi, :, hi] = p @ v[bi, :, kh]
    return out


def _qkv(lq, lk, heads, kv_heads, d=8, seed=0):
    rng = np.random.RandomState(seed)
    q = rng.normal(size=(2, lq, heads, d)).astype(np.float32)
    k = rng.normal(size=(2, lk, kv_heads, d)).astype(np.float32)
    v = rng.normal(size=(2, lk, kv_heads, d)).astype(np.float32)
    return q, k, v


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (6, 1)], ids=["mha", "gqa", "mqa"])
def test_causal_padded_attention_matches_reference(heads, kv_heads):
    q, k, v = _qkv(12, 12, heads, kv_heads)
    key_mask = np.arange(12)[None] < np.array([[12], [7]])
    ours = attend(
        jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), jnp.asarray(key_mask), causal=True
    )
    np.testing.assert_allclose(np.asarray(ours), _reference(q, k, v, key_mask, True), atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_gradients_match_jax_dot_product_attention(causal):
    q, k, v = (jnp.asarray(x) for x in _qkv(9, 9, 6, 2, d=8, seed=3))
    key_mask = jnp.arange(9)[None] < jnp.array([[9], [5]])
    ct = jax.random.normal(jax.random.PRNGKey(0), q.shape)

    def ours(q, k, v):
        return jnp.vdot(attend(q, k, v, key_mask, causal=causal), ct)

    def theirs(q, k, v):
        out = jax.nn.dot_product_attention(
            q, k, v, mask=key_mask[:, None, None, :], is_causal=causal, implementation="xla"
        )
        return jnp.vdot(out, ct)

    got = jax.grad(ours, argnums=(0, 1, 2))(q, k, v)
    want = jax.grad(theirs, argnums=(0, 1, 2))(q, k, v)
    for name, a, b in zip("qkv", got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, err_msg=name)


@pytest.mark.parametrize("blocks", [2, 3, 13])
def test_causal_query_blocks_match_reference_and_gradients(blocks):
    """Blocks of 6, 7 / 4, 5, 4 / 1 query rows, each against its key prefix only: the
    same outputs and the same q, k, v gradients as unblocked attention."""
    q, k, v = (jnp.asarray(x) for x in _qkv(13, 13, 4, 2, d=8, seed=5))
    key_mask = jnp.arange(13)[None] < jnp.array([[13], [9]])
    ct = jax.random.normal(jax.random.PRNGKey(1), q.shape)
    out = jax.jit(lambda q, k, v: causal_query_blocks(q, k, v, key_mask, blocks, min_block=1))(
        q, k, v
    )
    want = _reference(*(np.asarray(x) for x in (q, k, v, key_mask)), True)
    np.testing.assert_allclose(np.asarray(out), want, atol=1e-5)

    def blocked(q, k, v):
        return jnp.vdot(causal_query_blocks(q, k, v, key_mask, blocks, min_block=1), ct)

    def whole(q, k, v):
        return jnp.vdot(attend(q, k, v, key_mask, causal=True), ct)

    got = jax.jit(jax.grad(blocked, argnums=(0, 1, 2)))(q, k, v)
    ref = jax.jit(jax.grad(whole, argnums=(0, 1, 2)))(q, k, v)
    for name, a, b in zip("qkv", got, ref, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, err_msg=name)


def test_attend_blocks_queries_only_when_causal_and_long_enough():
    q, k, v = (jnp.asarray(x) for x in _qkv(70, 70, 4, 2, d=8, seed=6))
    key_mask = jnp.arange(70)[None] < jnp.array([[70], [50]])
    whole = attend(q, k, v, key_mask, causal=True)
    # 70 queries make two blocks of at least 32 (35 each), not four
    blocked = attend(q, k, v, key_mask, causal=True, query_blocks=4)
    np.testing.assert_allclose(np.asarray(blocked), np.asarray(whole), atol=1e-5)
    two = jax.make_jaxpr(lambda q: attend(q, k, v, key_mask, causal=True, query_blocks=4))(q)
    assert str(two).count("dot_general") == 4  # two blocks x (scores, values)
    # non-causal attention has no key prefix to skip: the argument changes nothing
    full = attend(q, k, v, key_mask, causal=False, query_blocks=4)
    np.testing.assert_array_equal(
        np.asarray(full), np.asarray(attend(q, k, v, key_mask, causal=False))
    )
    with pytest.raises(ValueError, match="query_blocks must be at least 1"):
        attend(q, k, v, key_mask, causal=True, query_blocks=0)


def test_single_query_against_a_cache_matches_reference():
    q, k, v = _qkv(1, 10, 4, 2)
    key_mask = np.arange(10)[None] <= np.array([[3], [9]])
    ours = attend(
        jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), jnp.asarray(key_mask), causal=False
    )
    np.testing.assert_allclose(np.asarray(ours), _reference(q, k, v, key_mask, False), atol=1e-5)


@pytest.mark.parametrize(
    "lq,heads,kv_heads",
    [(1, 4, 4), (1, 4, 2), (1, 6, 1), (3, 4, 2)],
    ids=["mha", "gqa", "mqa", "3q"],
)
def test_head_major_cache_attention_matches_reference(lq, heads, kv_heads):
    """attend_cached reads the cache as [B, K, T, D]; same result as the reference on [B, T, K, D]."""
    q, k, v = _qkv(lq, 10, heads, kv_heads)
    key_mask = np.arange(10)[None] <= np.array([[3], [9]])
    ours = attend_cached(
        jnp.asarray(q),
        jnp.asarray(k.transpose(0, 2, 1, 3)),
        jnp.asarray(v.transpose(0, 2, 1, 3)),
        jnp.asarray(key_mask),
    )
    assert ours.shape == q.shape
    np.testing.assert_allclose(np.asarray(ours), _reference(q, k, v, key_mask, False), atol=1e-5)


def test_head_major_cache_attention_rejects_ungrouped_heads():
    q, k, v = _qkv(1, 4, 3, 2)
    with pytest.raises(ValueError, match="multiple of kv heads"):
        attend_cached(
            jnp.asarray(q),
            jnp.asarray(k.transpose(0, 2, 1, 3)),
            jnp.asarray(v.transpose(0, 2, 1, 3)),
            jnp.ones((2, 4), bool),
        )


def test_fully_masked_rows_stay_finite():
    q, k, v = _qkv(4, 4, 2, 1)
    key_mask = np.zeros((2, 4), bool)
    out = attend(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), jnp.asarray(key_mask), causal=True)
    assert np.isfinite(np.asarray(out)).all()


@pytest.mark.parametrize("causal", [True, False])
def test_fused_path_arguments_agree_with_the_xla_path(causal):
    """The 'cudnn' backend turns the right-padding mask into key lengths; jax's XLA implementation of
    the same call must agree with the 'xla' path on every real query position."""
    lq = 10 if causal else 1
    q, k, v = _qkv(lq, 10, 4, 2, d=16)
    lengths = np.array([10, 6])
    key_mask = np.arange(10)[None] < lengths[:, None]
    args = (jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), jnp.asarray(key_mask))
    fused = np.asarray(fused_attention(*args, causal, implementation="xla"))
    ours = np.asarray(attend(*args, causal=causal))
    for b, n in enumerate(lengths):
        rows = slice(0, n) if causal else slice(0, 1)
        np.testing.assert_allclose(fused[b, rows], ours[b, rows], rtol=0, atol=1e-5)


def test_backend_errors_name_the_choices():
    q, k, v = (jnp.asarray(x) for x in _qkv(4, 4, 2, 1))
    with pytest.raises(ValueError, match="xla.*cudnn"):
        attend(q, k, v, causal=True, backend="flash")
    with pytest.raises(ValueError, match="bfloat16"):
        attend(q, k, v, causal=True, backend="cudnn")
    with pytest.raises(ValueError, match="multiple of kv heads"):
        attend(
            jnp.zeros((1, 4, 3, 8)),
            k[:1, :, :1].repeat(2, 2),
            v[:1, :, :1].repeat(2, 2),
            causal=True,
        )
