"""Pilot's auxiliary losses: the difference loss (eq. 14) and the router's MoE losses (eq. 15).

Our choices ([O], docs/methods.md section 4(g)): L_d is summed over tokens and channels per
image and averaged over real images; L_b = T Σ_i f_i P̄_i with f_i the fraction of tokens routed (argmax) to expert i;
L_z = mean over tokens of (logsumexp_i z_i)²; all means are over real (unmasked) image tokens.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxlvlm.models.pilot_connectors import difference_loss  # noqa: F401 - eq. 14 lives with the connector


def difference_loss_direct(x_t: jax.Array, x_s: jax.Array) -> jax.Array:
    """The direct form ||x_tᵀ x_s||_F² through the C x C product: x_t, x_s [M, N, C] -> [M]."""
    cross = jnp.einsum("mnc,mnd->mcd", x_t.astype(jnp.float32), x_s.astype(jnp.float32))
    return jnp.sum(cross * cross, axis=(1, 2))


def _token_weights(z: jax.Array, mask: jax.Array | None) -> jax.Array:
    shape = z.shape[:-1]
    if mask is None:
        return jnp.ones(shape, jnp.float32)
    mask = mask.astype(jnp.float32)
    return jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (len(shape) - mask.ndim)), shape)


def load_balancing_loss(z: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """L_b = T Σ_i f_i P̄_i over router logits z [..., T]; mask broadcasts from the left ([M] per
    image or [M, N] per token). Equals 1 for perfectly balanced routing, T when all goes to one."""
    num_experts = z.shape[-1]
    w = _token_weights(z, mask)
    total = jnp.maximum(jnp.sum(w), 1.0)
    probs = jax.nn.softmax(z.astype(jnp.float32), axis=-1)
    routed = jax.nn.one_hot(jnp.argmax(z, axis=-1), num_experts, dtype=jnp.float32)
    f = jnp.sum(routed * w[..., None], axis=tuple(range(z.ndim - 1))) / total
    p_mean = jnp.sum(probs * w[..., None], axis=tuple(range(z.ndim - 1))) / total
    return num_experts * jnp.sum(f * p_mean)


def router_z_loss(z: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """L_z = mean over tokens of (logsumexp_i z_i)², z [..., T], mask as in load_balancing_loss."""
    w = _token_weights(z, mask)
    lse = jax.nn.logsumexp(z.astype(jnp.float32), axis=-1)
    return jnp.sum(w * lse**2) / jnp.maximum(jnp.sum(w), 1.0)


def masked_image_mean(values: jax.Array, image_mask: jax.Array | None) -> jax.Array:
    """Mean of per-image values [M] over real images (mask [M]); all images when mask is None."""
    if image_mask is None:
        return jnp.mean(values)
    w = image_mask.astype(jnp.float32)
    return jnp.sum(values * w) / jnp.maximum(jnp.sum(w), 1.0)


def find_sown(intermediates: Any, name: str) -> list[jax.Array]:
    """All values sown under ``name`` anywhere in an 'intermediates' collection (any module path)."""
    found: list[jax.Array] = []

    def walk(node):
        if isinstance(node, dict) or hasattr(node, "items"):
            for key, value in node.items():
                if key == name:
                    found.extend(value if isinstance(value, tuple | list) else [value])
                else:
                    walk(value)

    walk(intermediates)
    return found


def proximal_term(params: Any, anchor: Any) -> jax.Array:
    """FedProx's ||w - w_global||² / 2 over matching pytrees (multiply by μ in the loss)."""
    sq = jax.tree_util.tree_map(
        lambda a, b: jnp.sum((a.astype(jnp.float32) - b.astype(jnp.float32)) ** 2), params, anchor
    )
    return 0.5 * sum(jax.tree_util.tree_leaves(sq))
