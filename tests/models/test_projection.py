"""Projection: one [tokens, d_in] x [d_in, d_out] matmul, equal to the contraction it stands for
(values and gradients) for multi-dimensional kernels like q_proj's and o_proj's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jaxlvlm.models.projection import Projection


@pytest.mark.parametrize(
    "in_shape,out_shape,lead",
    [((6,), (10,), (2, 5)), ((6,), (3, 4), (2, 5)), ((3, 4), (6,), (2, 5)), ((6,), (10,), (7,))],
    ids=["mlp", "q_proj", "o_proj", "one_batch_dim"],
)
def test_projection_equals_the_contraction_over_its_input_dims(in_shape, out_shape, lead):
    n_in = len(in_shape)
    names = ("a", "b")[:n_in], ("c", "d")[: len(out_shape)]
    mod = Projection(in_shape, out_shape, *names, use_bias=True)
    x = jax.random.normal(jax.random.PRNGKey(0), lead + in_shape)
    params = nn.meta.unbox(mod.init(jax.random.PRNGKey(1), x))
    # a non-zero bias, so its gradient is checked through the reshape as well
    params = jax.tree_util.tree_map(lambda p: p + 0.1, params)

    def ours(p, x):
        return mod.apply(p, x)

    def reference(p, x):
        dims = (tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in)))
        return jnp.tensordot(x, p["params"]["kernel"], dims) + p["params"]["bias"]

    y, y_ref = ours(params, x), reference(params, x)
    assert y.shape == lead + out_shape
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=1e-6, atol=1e-6)
    ct = jax.random.normal(jax.random.PRNGKey(2), y.shape)
    g = jax.grad(lambda p, x: jnp.vdot(ours(p, x), ct), argnums=(0, 1))(params, x)
    g_ref = jax.grad(lambda p, x: jnp.vdot(reference(p, x), ct), argnums=(0, 1))(params, x)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
