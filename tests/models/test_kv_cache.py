"""KV cache helpers: the per-layer head-major layout built from a prefill, the per-row token write
(including a dropped write past the end) and the decode key mask."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlvlm.models.kv_cache import cache_from_prefill, decode_key_mask, write_token


def test_cache_from_prefill_is_head_major_per_layer_and_padded():
    rng = np.random.RandomState(0)
    k = [rng.normal(size=(2, 5, 3, 4)).astype(np.float32) for _ in range(2)]
    v = [rng.normal(size=(2, 5, 3, 4)).astype(np.float32) for _ in range(2)]
    cache = cache_from_prefill(
        tuple(map(jnp.asarray, k)), tuple(map(jnp.asarray, v)), jnp.array([5, 2]), 8
    )
    assert cache.num_layers == 2 and cache.max_length == 8
    for got, want in zip(cache.k + cache.v, k + v, strict=True):
        assert got.shape == (2, 3, 8, 4)
        np.testing.assert_array_equal(np.asarray(got[:, :, :5]), want.transpose(0, 2, 1, 3))
        np.testing.assert_array_equal(np.asarray(got[:, :, 5:]), 0.0)
    assert cache.length.dtype == jnp.int32


def test_prefill_longer_than_the_cache_is_rejected():
    k = (jnp.zeros((1, 6, 1, 2)),)
    with pytest.raises(ValueError, match="max_length 4"):
        cache_from_prefill(k, k, jnp.array([6]), 4)


def test_write_token_sets_one_slot_per_row_and_drops_past_the_end():
    buffer = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    new = -np.ones((2, 3, 2), np.float32) * np.array([1.0, 2.0])[:, None, None]
    out = np.asarray(write_token(jnp.asarray(buffer), jnp.asarray(new), jnp.array([1, 4])))
    want = buffer.copy()
    want[0, :, 1] = new[0]  # row 1 writes at slot 4 == T: dropped, the row is unchanged
    np.testing.assert_array_equal(out, want)


def test_decode_key_mask_includes_the_slot_being_written():
    mask = np.asarray(decode_key_mask(jnp.array([0, 2]), 4))
    np.testing.assert_array_equal(mask, [[1, 0, 0, 0], [1, 1, 1, 0]])
