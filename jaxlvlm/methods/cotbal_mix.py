"""Eqs. (4)-(5) of CoTBal without argument checks, so they vmap over temperatures."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def tempered_weights(scores: jax.Array, tau: float, balanced: jax.Array | None = None) -> jax.Array:
    """T' * softmax(scores / tau) over the balanced tasks (mean 1 over them), 1.0 for the others.

    Args:
      scores: [T] (c_out, -c_in or D).
      tau: temperature > 0.
      balanced: [T] bool; False marks tasks with a fixed weight of 1 (text-only tasks such as
        ShareGPT, docs/methods.md section 1(c)); None = all tasks balanced.
    Returns:
      [T] float32 weights.
    """
    scores = jnp.asarray(scores, jnp.float32)
    if balanced is None:
        balanced = jnp.ones(scores.shape, bool)
    balanced = jnp.asarray(balanced, bool)
    logits = jnp.where(balanced, scores / tau, -jnp.inf)
    n_bal = balanced.sum().astype(jnp.float32)
    w = n_bal * jax.nn.softmax(logits)
    return jnp.where(balanced, w, 1.0)


def mixed_weights(
    c_out: jax.Array,
    c_in: jax.Array,
    D: jax.Array,
    tau: float | jax.Array,
    alphas: Sequence[float],
    balanced: jax.Array | None = None,
) -> jax.Array:
    """a_out T softmax(c_out / tau) + a_in T softmax(-c_in / tau) + a_D T softmax(D / tau): [T]."""
    a_out, a_in, a_d = alphas
    lam_out = tempered_weights(c_out, tau, balanced)
    lam_in = tempered_weights(-jnp.asarray(c_in, jnp.float32), tau, balanced)
    lam_d = tempered_weights(D, tau, balanced)
    return a_out * lam_out + a_in * lam_in + a_d * lam_d
