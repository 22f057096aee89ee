"""ViT vision tower in the two styles LLaVA uses: CLIP and SigLIP.

CLIP: class token, pre-layernorm, quick_gelu, patch projection without bias; its post-layernorm only
feeds the pooled output, which LLaVA never uses, so it is not part of this module.
SigLIP: no class token, gelu (tanh), patch projection with bias, post-layernorm on the last hidden state.

Parameter names mirror transformers' (``embeddings``, ``encoder``-less ``layers_{i}`` / stacked ``layers``,
``layer_norm1``, ``self_attn.q_proj`` ...) so the conversion tables stay short.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxlvlm.models.activations import get_activation
from jaxlvlm.models.attention import attend
from jaxlvlm.models.config import RuntimeConfig, VisionConfig
from jaxlvlm.models.decoder_layer import remat_policy
from jaxlvlm.models.projection import Projection

_KERNEL_INIT = nn.initializers.normal(stddev=0.02)


def _lp(init, names):
    return nn.with_logical_partitioning(init, names)


def _layer_norm(cfg: VisionConfig, runtime: RuntimeConfig, name: str) -> nn.LayerNorm:
    # Statistics are computed in float32 by flax whatever the compute dtype.
    return nn.LayerNorm(
        epsilon=cfg.layer_norm_eps,
        dtype=jnp.dtype(runtime.compute_dtype),
        param_dtype=jnp.dtype(runtime.param_dtype),
        scale_init=_lp(nn.initializers.ones, ("norm",)),
        bias_init=_lp(nn.initializers.zeros, ("norm",)),
        name=name,
    )


class ViTAttention(nn.Module):
    """Multi-head self-attention with q/k/v/out projections (all with bias).

    The projections are ``Projection`` modules, whose kernels are created in their full shape
    ([D, heads, head_dim] for q/k/v, [heads, head_dim, D] for out): flax's ``DenseGeneral``
    initialises a flat [D, heads * head_dim] kernel and unboxes it under the logical names of the
    full one, which fails as soon as a mesh is set (``jax.set_mesh``). Names, shapes and the
    normal(0.02) initial values are those ``DenseGeneral`` gave.
    """

    config: VisionConfig
    runtime: RuntimeConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [M, T, D] -> [M, T, D]."""
        cfg, rt = self.config, self.runtime
        heads = (cfg.num_heads, cfg.head_dim)
        head_names = ("heads", "head_dim")
        proj = functools.partial(
            Projection,
            use_bias=True,
            dtype=jnp.dtype(rt.compute_dtype),
            param_dtype=jnp.dtype(rt.param_dtype),
            kernel_init=_KERNEL_INIT,
        )
        qkv = functools.partial(proj, (cfg.hidden_size,), heads, ("vit_embed",), head_names)
        q = qkv(name="q_proj")(x)
        k = qkv(name="k_proj")(x)
        v = qkv(name="v_proj")(x)
        o = attend(q, k, v, None, causal=False, backend=rt.attention_backend)
        out = proj(heads, (cfg.hidden_size,), head_names, ("vit_embed",), name="out_proj")
        return out(o)


class ViTMLP(nn.Module):
    """fc1 -> activation -> fc2."""

    config: VisionConfig
    runtime: RuntimeConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [M, T, D] -> [M, T, D]."""
        cfg, rt = self.config, self.runtime
        dense = functools.partial(
            nn.Dense, dtype=jnp.dtype(rt.compute_dtype), param_dtype=jnp.dtype(rt.param_dtype)
        )
        h = dense(
            cfg.intermediate_size,
            kernel_init=_lp(_KERNEL_INIT, ("vit_embed", "vit_mlp")),
            bias_init=_lp(nn.initializers.zeros, ("vit_mlp",)),
            name="fc1",
        )(x)
        h = get_activation(cfg.act)(h)
        return dense(
            cfg.hidden_size,
            kernel_init=_lp(_KERNEL_INIT, ("vit_mlp", "vit_embed")),
            bias_init=_lp(nn.initializers.zeros, ("vit_embed",)),
            name="fc2",
        )(h)


class ViTLayer(nn.Module):
    """Pre-norm transformer encoder layer: x + attn(ln1(x)); then + mlp(ln2(x))."""

    config: VisionConfig
    runtime: RuntimeConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [M, T, D] -> [M, T, D]."""
        cfg, rt = self.config, self.runtime
        x = x + ViTAttention(cfg, rt, name="self_attn")(_layer_norm(cfg, rt, "layer_norm1")(x))
        x = x + ViTMLP(cfg, rt, name="mlp")(_layer_norm(cfg, rt, "layer_norm2")(x))
        return nn.with_logical_constraint(x, ("batch", "length", None))


class _ScanStep(nn.Module):
    """One scanned layer that also keeps the hidden state after layer ``keep_after`` (1-based)."""

    config: VisionConfig
    runtime: RuntimeConfig
    keep_after: int

    @nn.compact
    def __call__(self, carry, layer_index):
        h, kept = carry
        layer = ViTLayer
        if self.runtime.remat_vision != "none":
            # Inside scan the CSE barrier is unnecessary (scan already prevents it) and costs speed.
            layer = nn.remat(
                layer, policy=remat_policy(self.runtime.remat_vision), prevent_cse=False
            )
        h = layer(self.config, self.runtime, name="layer")(h)
        kept = jnp.where(layer_index + 1 == self.keep_after, h, kept)
        return (h, kept), None


class ViTEmbeddings(nn.Module):
    """Patch projection (reshape + matmul) + class token (CLIP) + learned position embeddings."""

    config: VisionConfig
    runtime: RuntimeConfig

    @nn.compact
    def __call__(self, pixel_values: jax.Array) -> jax.Array:
        """pixel_values: [M, H, W, C] (channels last) -> [M, T, D] with T = num_positions."""
        cfg, rt = self.config, self.runtime
        m, h, w, c = pixel_values.shape
        p = cfg.patch_size
        if (h, w, c) != (cfg.image_size, cfg.image_size, cfg.num_channels):
            raise ValueError(
                f"pixel_values has image shape {(h, w, c)}, the vision tower expects "
                f"{(cfg.image_size, cfg.image_size, cfg.num_channels)} (channels last); resize the images"
            )
        pdt, dt = jnp.dtype(rt.param_dtype), jnp.dtype(rt.compute_dtype)
        gh, gw = h // p, w // p
        # [M, gh, p, gw, p, C] -> [M, gh, gw, p, p, C]: row-major patch order, like a strided conv.
        patches = pixel_values.reshape(m, gh, p, gw, p, c).transpose(0, 1, 3, 2, 4, 5)
        patches = patches.reshape(m, gh * gw, p * p * c).astype(dt)
        kernel = self.param(
            "patch_embedding",
            _lp(_KERNEL_INIT, ("patch", "vit_embed")),
            (p * p * c, cfg.hidden_size),
            pdt,
        )
        x = jnp.einsum("mtk,kd->mtd", patches, kernel.astype(dt))
        if cfg.style == "siglip":
            bias = self.param(
                "patch_bias", _lp(nn.initializers.zeros, ("vit_embed",)), (cfg.hidden_size,), pdt
            )
            x = x + bias.astype(dt)
        else:
            cls = self.param(
                "class_embedding", _lp(_KERNEL_INIT, ("vit_embed",)), (cfg.hidden_size,), pdt
            )
            x = jnp.concatenate(
                [jnp.broadcast_to(cls.astype(dt), (m, 1, cfg.hidden_size)), x], axis=1
            )
        pos = self.param(
            "position_embedding",
            _lp(_KERNEL_INIT, ("positions", "vit_embed")),
            (cfg.num_positions, cfg.hidden_size),
            pdt,
        )
        return x + pos.astype(dt)[None]


class VisionTower(nn.Module):
    """A CLIP or SigLIP ViT.

    ``__call__(pixel_values [M, H, W, C], feature_layer=None) -> [M, T, D]``:
    feature_layer None gives the tower's last_hidden_state (post-layernormed for SigLIP), an int gives
    transformers' ``hidden_states[feature_layer]`` (index 0 = embeddings (after CLIP's pre-layernorm),
    i = output of layer i, negative from the end; never post-layernormed). Layers past the chosen one are
    not run (without scan) or their result is discarded (with scan, which runs all layers).
    """

    config: VisionConfig
    runtime: RuntimeConfig = RuntimeConfig()

    @nn.compact
    def __call__(self, pixel_values: jax.Array, feature_layer: int | None = None) -> jax.Array:
        cfg, rt = self.config, self.runtime
        n_layers = cfg.num_layers
        if feature_layer is None:
            keep_after = n_layers
        else:
            if not -(n_layers + 1) <= feature_layer <= n_layers:
                raise ValueError(
                    f"vision feature layer {feature_layer} out of range for {n_layers} layers "
                    f"(hidden states are indexed {-(n_layers + 1)}..{n_layers})"
                )
            keep_after = feature_layer % (n_layers + 1)

        x = ViTEmbeddings(cfg, rt, name="embeddings")(pixel_values)
        if cfg.style == "clip":
            x = _layer_norm(cfg, rt, "pre_layrnorm")(x)
        x = nn.with_logical_constraint(x, ("batch", "length", None))

        initializing = self.is_initializing()
        if rt.scan_layers:
            scan = nn.scan(
                _ScanStep,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                in_axes=0,
                length=n_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )
            if keep_after > 0 or initializing:
                (_, x), _ = scan(cfg, rt, keep_after, name="layers")((x, x), jnp.arange(n_layers))
        else:
            layer_cls = ViTLayer
            if rt.remat_vision != "none":
                layer_cls = nn.remat(layer_cls, policy=remat_policy(rt.remat_vision))
            kept = x
            # At init every layer is built so the parameter tree is complete.
            for i in range(n_layers if initializing else keep_after):
                x = layer_cls(cfg, rt, name=f"layers_{i}")(x)
                if i + 1 == keep_after:
                    kept = x
            x = kept

        if cfg.style == "siglip" and (feature_layer is None or initializing):
            # Built at init even when features come from a hidden layer, so a LLaVA tree keeps the
            # checkpoint's post-layernorm for the bare-tower output and for export.
            normed = _layer_norm(cfg, rt, "post_layernorm")(x)
            if feature_layer is None:
                x = normed
        return x
