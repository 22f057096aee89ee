"""Rademacher random projection of per-sample gradients, generated block by block from a PRNG key.

Adapt-∞ embeds every pool sample by u = Π g / sqrt(k) with Π ∈ {±1}^{k×P} (docs/methods.md
section 3(b)). P is the size of one decoder layer's LoRA parameters (about a million for a 7B
model) and k = 8192, so Π itself would take tens of GiB. It is never materialised: block (i, j) of Π, of shape
[block_k, block_p], is regenerated from ``fold_in(fold_in(key, i), j)`` inside a ``lax.scan`` each
time it is needed, so peak memory is one block plus the [B, block_k] accumulator. The same key and
block sizes always give the same Π, which keeps sample vectors comparable across batches and steps.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp


def _num_blocks(size: int, block: int) -> int:
    return -(-size // block)


def rademacher_block(
    key: jax.Array,
    row_block: int | jax.Array,
    col_block: int | jax.Array,
    block_k: int,
    block_p: int,
) -> jax.Array:
    """Block (row_block, col_block) of Π: float32 [block_k, block_p] with entries ±1."""
    block_key = jax.random.fold_in(jax.random.fold_in(key, row_block), col_block)
    return jax.random.rademacher(block_key, (block_k, block_p), dtype=jnp.float32)


@functools.partial(jax.jit, static_argnames=("dim", "block_k", "block_p"))
def rademacher_project(
    g: jax.Array, key: jax.Array, dim: int, block_k: int = 128, block_p: int = 16384
) -> jax.Array:
    """Projects rows of ``g`` [B, P] to [B, dim]: u = g Πᵀ / sqrt(dim), Π regenerated per block.

    E[<u_a, u_b>] = <g_a, g_b>, so inner products (and norms) are preserved up to the
    Johnson-Lindenstrauss error O(sqrt(log n / dim)). ``block_p`` is clipped to P; P and dim need
    not be multiples of the block sizes (padded columns of g are zero, extra rows of Π are cut).
    """
    if g.ndim != 2:
        raise ValueError(f"rademacher_project expects g of shape [B, P], got {g.shape}")
    batch, num_params = g.shape
    block_p = min(block_p, num_params)
    nb_p = _num_blocks(num_params, block_p)
    nb_k = _num_blocks(dim, block_k)
    g = g.astype(jnp.float32)
    g = jnp.pad(g, ((0, 0), (0, nb_p * block_p - num_params)))
    g_blocks = g.reshape(batch, nb_p, block_p).transpose(1, 0, 2)  # [nb_p, B, block_p]

    def row_block(_, i):
        def col_block(acc, xs):
            j, g_j = xs
            pi = rademacher_block(key, i, j, block_k, block_p)
            return acc + g_j @ pi.T, None

        acc0 = jnp.zeros((batch, block_k), jnp.float32)
        acc, _ = jax.lax.scan(col_block, acc0, (jnp.arange(nb_p), g_blocks))
        return None, acc

    _, out = jax.lax.scan(row_block, None, jnp.arange(nb_k))  # [nb_k, B, block_k]
    out = out.transpose(1, 0, 2).reshape(batch, nb_k * block_k)[:, :dim]
    return out / math.sqrt(dim)


def rademacher_matrix(
    key: jax.Array, dim: int, num_params: int, block_k: int = 128, block_p: int = 16384
) -> jax.Array:
    """The full Π [dim, P] that ``rademacher_project`` uses implicitly (unscaled ±1 entries).

    Only for small sizes: references in tests and debugging. The projection never calls it.
    """
    block_p = min(block_p, num_params)
    nb_p = _num_blocks(num_params, block_p)
    nb_k = _num_blocks(dim, block_k)
    rows = [
        jnp.concatenate(
            [rademacher_block(key, i, j, block_k, block_p) for j in range(nb_p)], axis=1
        )
        for i in range(nb_k)
    ]
    return jnp.concatenate(rows, axis=0)[:dim, :num_params]


def normalize_rows(u: jax.Array, eps: float = 1e-12) -> jax.Array:
    """L2-normalises rows of u [B, k]; an all-zero row (zero gradient) stays zero."""
    norm = jnp.linalg.norm(u, axis=-1, keepdims=True)
    return u / jnp.maximum(norm, eps)
