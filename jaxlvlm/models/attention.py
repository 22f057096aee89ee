"""Grouped-query self-attention of the decoder: one attention function with a backend switch, and the
attention block (q/k/v/o projections with optional bias, RoPE, KV-cache step, low-rank hooks)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxlvlm.models.attention_core import MASKED, softmax_attention
from jaxlvlm.models.config import RuntimeConfig, TextConfig
from jaxlvlm.models.kv_cache import write_token
from jaxlvlm.models.lowrank import LowRankFactors
from jaxlvlm.models.projection import Projection
from jaxlvlm.models.rope import apply_rope

ATTENTION_BACKENDS = ("xla", "cudnn")


def attend(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    key_mask: jax.Array | None = None,
    *,
    causal: bool,
    backend: str = "xla",
    query_blocks: int = 1,
    custom_vjp: bool = False,
) -> jax.Array:
    """Scaled dot-product attention with grouped KV heads.

    q: [B, Lq, H, D]; k, v: [B, Lk, K, D] with H a multiple of K (query head h reads kv head h // (H/K));
    key_mask: [B, Lk] bool, True = visible key (for 'cudnn' it must be a prefix of ones per row, i.e. right
    padding, as it is turned into key lengths); causal: query i sees keys j <= i (needs Lq == Lk).
    Returns [B, Lq, H, D] in q's dtype.

    'xla': batched-matmul attention with the softmax in float32; kv heads are shared by grouping the
    query heads, not by repeating k/v in memory. 'cudnn': jax.nn.dot_product_attention(implementation='cudnn') (GPU,
    bfloat16/float16 only).
    query_blocks ('xla', causal only): split the queries into this many consecutive blocks, each
    attending only to the keys up to its last query (``causal_query_blocks``): the same result with
    about (n + 1) / 2n of the score and value products.
    custom_vjp ('xla'): the hand-written backward of models/attention_core.py; False (the default,
    RuntimeConfig.attention_custom_vjp): JAX's autodiff of the same forward.
    """
    if q.shape[2] % k.shape[2]:
        raise ValueError(f"query heads {q.shape[2]} are not a multiple of kv heads {k.shape[2]}")
    if causal and q.shape[1] != k.shape[1]:
        raise ValueError(
            f"causal attention needs as many queries as keys, got {q.shape[1]} / {k.shape[1]}"
        )
    if query_blocks < 1:
        raise ValueError(
            f"query_blocks must be at least 1, got {query_blocks}; set "
            "runtime.attention_query_blocks to 1 (unblocked) or more"
        )
    if backend == "xla":
        if causal and query_blocks > 1:
            return causal_query_blocks(q, k, v, key_mask, query_blocks, custom_vjp=custom_vjp)
        return _xla_attention(q, k, v, key_mask, causal, custom_vjp=custom_vjp)
    if backend == "cudnn":
        if q.dtype not in (jnp.bfloat16, jnp.float16):
            raise ValueError(
                f"attention_backend 'cudnn' needs bfloat16/float16 compute, got {q.dtype}; set "
                "RuntimeConfig.compute_dtype='bfloat16' or attention_backend='xla'"
            )
        return fused_attention(q, k, v, key_mask, causal, implementation="cudnn")
    raise ValueError(
        f"attention backend '{backend}' is unknown; choose from {list(ATTENTION_BACKENDS)}"
    )


# A query block shorter than this is not split further: its products get too small to run well.
MIN_QUERY_BLOCK = 32


def causal_query_blocks(
    q, k, v, key_mask, blocks: int, min_block: int = MIN_QUERY_BLOCK, custom_vjp: bool = False
) -> jax.Array:
    """Causal attention computed per block of consecutive queries: queries [s, e) see only keys
    [0, e), so each block's softmax is complete over its own key prefix and the result is exactly
    the unblocked one (no online softmax), while the products skip the keys no query of the block
    may see. With n equal blocks the score and value products do (n + 1) / 2n of the work.

    q: [B, L, H, D]; k, v: [B, L, K, D]; key_mask: [B, L] or None. At most L // min_block blocks
    are made (at least one), as equal as integers allow. Returns [B, L, H, D].
    """
    lq = q.shape[1]
    n = max(1, min(blocks, lq // min_block))
    bounds = [round(i * lq / n) for i in range(n + 1)]
    outs = []
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        mask = None if key_mask is None else key_mask[:, :e]
        outs.append(
            _xla_attention(
                q[:, s:e], k[:, :e], v[:, :e], mask, True, query_offset=s, custom_vjp=custom_vjp
            )
        )
    return outs[0] if n == 1 else jnp.concatenate(outs, axis=1)


def _xla_attention(q, k, v, key_mask, causal, query_offset: int = 0, custom_vjp: bool = False):
    """'xla' backend: both products batched over (B, kv head) with the query heads of a kv head
    stacked as rows, [B, K, G*Lq, D] x [B, K, Lk, D]: plain batched matmuls for XLA's CPU dot
    kernels. The einsum 'bqkgd,btkd->bkgqt' it replaces took 85.6 against 66.4 ms per layer forward
    and backward at the 'small' bench shapes (B 8, L 256, 8 heads, 4 kv heads, head_dim 64).
    query_offset: the position of q's first query among the keys (causal: query i sees keys
    j <= i + query_offset). custom_vjp: the hand-written backward of attention_core (False: JAX's
    autodiff of the same forward)."""
    b, lq, h, d = q.shape
    kv = k.shape[2]
    g = h // kv
    qh = jnp.transpose(q.reshape(b, lq, kv, g, d), (0, 2, 3, 1, 4)).reshape(b, kv, g * lq, d)
    kh, vh = jnp.transpose(k, (0, 2, 1, 3)), jnp.transpose(v, (0, 2, 1, 3))  # [B, K, Lk, D]
    out = softmax_attention(
        qh,
        kh,
        vh,
        key_mask,
        groups=g,
        causal=causal,
        query_offset=query_offset,
        custom_vjp=custom_vjp,
    )  # [B, K, G*Lq, D]
    out = jnp.transpose(out.reshape(b, kv, g, lq, d), (0, 3, 1, 2, 4))
    return out.reshape(b, lq, h, d)


def attend_cached(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array) -> jax.Array:
    """Attention of new queries against a head-major KV cache (the decode step).

    q: [B, Lq, H, D]; k, v: [B, K, T, D] (one layer's cache, H a multiple of K); key_mask: [B, T] bool,
    True = visible slot. Returns [B, Lq, H, D] in q's dtype, softmax in float32.

    Same arithmetic as ``attend(..., causal=False)`` on the token-major layout, arranged for XLA's CPU
    dot kernels: both products are batched over (B, K) with the cache buffer as the left operand and
    scores kept as [B, K, T, G*Lq], so neither product transposes the cache (the einsum
    'bkgt,bktd->bkgd' was lowered to a slow transposed-operand dot: 2 ms per layer at T=512 against
    under 1 ms for the whole attention here, measured on the 'small' bench config).
    """
    b, lq, h, d = q.shape
    kv = k.shape[1]
    if h % kv:
        raise ValueError(f"query heads {h} are not a multiple of kv heads {kv}")
    g = h // kv
    # [B, Lq, K, G, D] -> [B, K, G*Lq, D]: query rows of one kv head side by side (Lq is 1 when decoding).
    qg = jnp.transpose(q.reshape(b, lq, kv, g, d), (0, 2, 3, 1, 4)).reshape(b, kv, g * lq, d)
    batch = ((0, 1), (0, 1))
    scores = jax.lax.dot_general(
        k, qg, (((3,), (3,)), batch), preferred_element_type=jnp.float32
    )  # [B, K, T, G*Lq]
    scores = scores * (d**-0.5)
    scores = jnp.where(key_mask.astype(bool)[:, None, :, None], scores, MASKED)
    probs = jax.nn.softmax(scores, axis=2).astype(v.dtype)
    out = jax.lax.dot_general(probs, v, (((2,), (2,)), batch))  # [B, K, G*Lq, D]
    out = jnp.transpose(out.reshape(b, kv, g, lq, d), (0, 3, 1, 2, 4))
    return out.reshape(b, lq, h, d).astype(q.dtype)


def fused_attention(q, k, v, key_mask, causal, implementation: str | None):
    """jax.nn.dot_product_attention with right-padding key lengths (the 'cudnn' backend's path; on CPU
    ``implementation='xla'`` runs the same arguments, which is how tests check them)."""
    lengths = None
    if key_mask is not None:
        # At least one key per row, so an all-padding row cannot produce NaNs in the fused kernel.
        lengths = jnp.maximum(jnp.sum(key_mask.astype(jnp.int32), axis=-1), 1)
    return jax.nn.dot_product_attention(
        q,
        k,
        v,
        is_causal=causal,
        key_value_seq_lengths=lengths,
        implementation=implementation,
    )


def qkv_bias(cfg: TextConfig) -> bool:
    """Whether q/k/v projections have a bias (Qwen2; Llama with attention_bias)."""
    return cfg.arch == "qwen2" or cfg.attention_bias


def o_bias(cfg: TextConfig) -> bool:
    """Whether o_proj has a bias: Llama's attention_bias covers o_proj too, Qwen2's never does."""
    return cfg.arch == "llama" and cfg.attention_bias


class SelfAttention(nn.Module):
    """Causal GQA self-attention with RoPE.

    Training / prefill (cache_kv None): x [B, L, C] attends causally within itself under key_mask [B, L];
    returns (y [B, L, C], (k, v) [B, L, K, D] each, for the cache).
    Decode (cache_kv = this layer's cache (k, v) [B, K, T, D], cache_index [B]): x [B, 1, C] is written at
    slot cache_index[b] and attends to the slots key_mask [B, T] marks; returns (y [B, 1, C], (k, v)
    [B, K, T, D] each, the layer's updated cache buffers).
    """

    config: TextConfig
    runtime: RuntimeConfig

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        sin: jax.Array,
        cos: jax.Array,
        key_mask: jax.Array | None,
        lowrank: dict[str, LowRankFactors],
        cache_kv: tuple[jax.Array, jax.Array] | None = None,
        cache_index: jax.Array | None = None,
    ):
        cfg, rt = self.config, self.runtime
        c, h, kv, d = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.resolved_head_dim
        dt, pdt = jnp.dtype(rt.compute_dtype), jnp.dtype(rt.param_dtype)

        def proj(name, in_shape, out_shape, in_names, out_names, bias):
            return Projection(in_shape, out_shape, in_names, out_names, bias, dt, pdt, name=name)

        bias = qkv_bias(cfg)
        q = proj("q_proj", (c,), (h, d), ("embed",), ("heads", "head_dim"), bias)(
            x, lowrank.get("q_proj")
        )
        k = proj("k_proj", (c,), (kv, d), ("embed",), ("kv_heads", "head_dim"), bias)(
            x, lowrank.get("k_proj")
        )
        v = proj("v_proj", (c,), (kv, d), ("embed",), ("kv_heads", "head_dim"), bias)(
            x, lowrank.get("v_proj")
        )
        q = apply_rope(q, sin, cos)
        k = apply_rope(k, sin, cos)
        if cache_kv is None:
            out = attend(
                q,
                k,
                v,
                key_mask,
                causal=True,
                backend=rt.attention_backend,
                query_blocks=rt.attention_query_blocks,
                custom_vjp=rt.attention_custom_vjp,
            )
            new_kv = (k, v)
        else:
            keys = write_token(cache_kv[0], k[:, 0], cache_index)
            values = write_token(cache_kv[1], v[:, 0], cache_index)
            # One query against the cache is a memory-bound matrix-vector product: the einsum path
            # serves every backend here. The written buffers are the new cache: handing them back
            # avoids a second pass (a scatter) over the cache after the layers.
            out = attend_cached(q, keys, values, key_mask)
            new_kv = (keys, values)
        y = proj("o_proj", (h, d), (c,), ("heads", "head_dim"), ("embed",), o_bias(cfg))(
            out, lowrank.get("o_proj")
        )
        return y, new_kv
