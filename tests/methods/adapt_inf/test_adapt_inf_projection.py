"""Block Rademacher projection: numpy reference, JL bound, never holding the full matrix."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxlvlm.methods.adapt_inf.projection import (
    normalize_rows,
    rademacher_matrix,
    rademacher_project,
)


def test_projection_matches_explicit_matrix():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(5, 300)).astype(np.float32)
    key = jax.random.key(3)
    # dim and P deliberately not multiples of the block sizes.
    u = rademacher_project(jnp.asarray(g), key, dim=200, block_k=64, block_p=128)
    pi = np.asarray(rademacher_matrix(key, 200, 300, block_k=64, block_p=128))
    assert set(np.unique(pi)) == {-1.0, 1.0}
    ref = g.astype(np.float64) @ pi.T.astype(np.float64) / math.sqrt(200)
    np.testing.assert_allclose(np.asarray(u), ref, rtol=1e-5, atol=1e-4)


def test_projection_preserves_inner_products_within_jl_bound():
    n, num_params, dim = 20, 3000, 2048
    rng = np.random.default_rng(1)
    g = rng.normal(size=(n, num_params))
    g[1] = g[0] + 0.3 * rng.normal(
        size=num_params
    )  # a correlated pair, not only near-orthogonal ones
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    u = np.asarray(rademacher_project(jnp.asarray(g, jnp.float32), jax.random.key(0), dim=dim))
    # JL: norms of the 2n^2 vectors x±y kept within 1±eps when dim >= 4 ln N / (eps^2/2 - eps^3/3);
    # by polarisation, inner products of unit vectors then move by at most eps.
    big_n = 2 * n * n
    eps = next(
        e for e in np.linspace(0.01, 1, 1000) if dim >= 4 * math.log(big_n) / (e**2 / 2 - e**3 / 3)
    )
    err = np.abs(u @ u.T - g @ g.T)
    assert err.max() <= eps, (err.max(), eps)
    assert np.abs(np.linalg.norm(u, axis=1) ** 2 - 1).max() <= eps


def _max_intermediate_size(jaxpr) -> int:
    best = 0
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            best = max(best, int(np.prod(v.aval.shape)) if hasattr(v.aval, "shape") else 0)
        for p in eqn.params.values():
            sub = getattr(p, "jaxpr", None)
            if sub is not None:
                best = max(best, _max_intermediate_size(getattr(sub, "jaxpr", sub)))
    return best


def test_full_projection_matrix_is_never_materialised():
    dim, num_params, batch = 1024, 4096, 4
    g = jnp.ones((batch, num_params))
    jaxpr = jax.make_jaxpr(
        lambda x: rademacher_project(x, jax.random.key(0), dim=dim, block_k=128, block_p=512)
    )(g)
    largest = _max_intermediate_size(jaxpr.jaxpr)
    assert largest <= 128 * 512 * 2, largest  # one block (plus bits), far below dim * P
    assert largest < dim * num_params // 16


def test_projection_is_deterministic_in_the_key_and_normalised_rows():
    g = jnp.asarray(np.random.default_rng(2).normal(size=(3, 100)), jnp.float32)
    a = rademacher_project(g, jax.random.key(5), dim=64)
    b = rademacher_project(g, jax.random.key(5), dim=64)
    c = rademacher_project(g, jax.random.key(6), dim=64)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))
    nrm = np.linalg.norm(np.asarray(normalize_rows(a)), axis=1)
    np.testing.assert_allclose(nrm, 1.0, rtol=1e-6)
    assert np.all(np.asarray(normalize_rows(jnp.zeros((2, 4)))) == 0)
