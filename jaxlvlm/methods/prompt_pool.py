"""Continual LLaVA's low-rank pool as pure functions (docs/methods.md section 2).

A frozen LVLM; for every instance the instruction embedding e [d_s] picks the top-M of N pool keys by
cosine similarity (eq. 7) and the o_proj of every decoder layer gains the weighted sum of the chosen
low-rank increments (eq. 8) plus contextual increments: frozen per-task snapshots of the pool, each
mixed by the task's mean selection coefficients and a learnable weight w_l = sigmoid(u_l) in [0, 1]
(eq. 9). Everything is expressed in the model's low-rank hook format (jaxlvlm.models.lowrank), so no
d x d matrix is ever built per example: ``pool_lowrank`` hands the model each example's M selected
entries already gathered (GatheredFactors, rank M*R per example) plus the contextual entries as one
batch-shared LowRankFactors part (which the model may fold into the o_proj weight when that is
cheaper). ``pool_factors`` / ``pool_lowrank_reference`` keep the all-entries form
(a [layers, N + E, d_in, R], b [layers, N + E, R, d_out], coeff [B, N + E]) as the reference:
delta[b, s] = sum_e coeff[b, e] (x[b, s] @ a[l, e]) @ b[l, e].

State, split by how it changes (both plain dict pytrees, for the train state):
  trainable ``pool``:  keys [N, d_s] (stage 1 only), a [L, N, d_in, R], b [L, N, R, d_out], u [T_max]
  ``memory`` (no gradient): snapshots of the pool per finished task (the K entries with the largest
    mean coefficient; K = N keeps every entry, exact), their coefficients, the running coefficient sum
    of the current task, and the number of finished tasks.

Orientation: the pool's a/b follow the hook's row-vector convention, so the paper's P = B A
acting on a column vector h (docs/methods.md section 2(b)) is x @ a @ b here.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxlvlm.models.lowrank import GatheredFactors, LowRankFactors

COS_EPS = 1e-8


@dataclasses.dataclass(frozen=True)
class PoolConfig:
    """Static pool shape (hashable: usable as a jit static argument).

    pool_size N, top_m M, rank R, embed_dim d_s (instruction embedding), num_layers L of the decoder,
    d_in / d_out of the adapted projection (o_proj: heads * head_dim -> hidden), max_tasks T_max (slots
    for snapshots and contextual weights), snapshot_entries K <= N kept per task snapshot (0 = N),
    include_current: also mix in the current task's own running mean (the l = t reading of
    docs/methods.md section 2(b)).
    """

    pool_size: int = 30
    top_m: int = 5
    rank: int = 8
    embed_dim: int = 384
    num_layers: int = 2
    d_in: int = 64
    d_out: int = 64
    max_tasks: int = 8
    snapshot_entries: int = 0
    include_current: bool = False
    target: str = "o_proj"

    def __post_init__(self):
        if not 1 <= self.top_m <= self.pool_size:
            raise ValueError(f"top_m must be in [1, pool_size={self.pool_size}], got {self.top_m}")
        if not 0 <= self.snapshot_entries <= self.pool_size:
            raise ValueError(
                f"snapshot_entries must be in [0, pool_size={self.pool_size}], got {self.snapshot_entries}"
            )
        for name in ("rank", "embed_dim", "num_layers", "d_in", "d_out", "max_tasks"):
            if getattr(self, name) < 1:
                raise ValueError(f"PoolConfig.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def kept_entries(self) -> int:
        return self.snapshot_entries or self.pool_size

    @property
    def num_context_entries(self) -> int:
        """Extra hook entries for the contextual term (snapshots, plus the current task if enabled)."""
        return self.max_tasks * self.kept_entries + (self.pool_size if self.include_current else 0)


def init_pool(rng: jax.Array, cfg: PoolConfig) -> dict[str, jax.Array]:
    """Trainable pool: keys ~ N(0, 1) then unit-norm, a ~ N(0, 1/d_in), b = 0 (delta starts at 0), u = 0.

    Returns: {'keys' [N, d_s], 'a' [L, N, d_in, R], 'b' [L, N, R, d_out], 'u' [T_max]} float32.
    """
    k_keys, k_a = jax.random.split(rng)
    keys = jax.random.normal(k_keys, (cfg.pool_size, cfg.embed_dim), jnp.float32)
    keys = keys / jnp.linalg.norm(keys, axis=-1, keepdims=True)
    a = jax.random.normal(k_a, (cfg.num_layers, cfg.pool_size, cfg.d_in, cfg.rank), jnp.float32)
    a = a / jnp.sqrt(jnp.float32(cfg.d_in))
    b = jnp.zeros((cfg.num_layers, cfg.pool_size, cfg.rank, cfg.d_out), jnp.float32)
    return {"keys": keys, "a": a, "b": b, "u": jnp.zeros((cfg.max_tasks,), jnp.float32)}


def init_memory(cfg: PoolConfig) -> dict[str, jax.Array]:
    """Empty memory: no finished task, zero running sums.

    Returns: {'snap_a' [T_max, L, K, d_in, R], 'snap_b' [T_max, L, K, R, d_out], 'snap_alpha'
    [T_max, K], 'snap_index' [T_max, K] int32 (pool entry of each kept slot), 'num_done' [] int32,
    'coeff_sum' [N], 'coeff_count' []}.
    """
    T, L, K = cfg.max_tasks, cfg.num_layers, cfg.kept_entries
    return {
        "snap_a": jnp.zeros((T, L, K, cfg.d_in, cfg.rank), jnp.float32),
        "snap_b": jnp.zeros((T, L, K, cfg.rank, cfg.d_out), jnp.float32),
        "snap_alpha": jnp.zeros((T, K), jnp.float32),
        "snap_index": jnp.zeros((T, K), jnp.int32),
        "num_done": jnp.zeros((), jnp.int32),
        "coeff_sum": jnp.zeros((cfg.pool_size,), jnp.float32),
        "coeff_count": jnp.zeros((), jnp.float32),
    }


def cosine_similarity(e: jax.Array, keys: jax.Array) -> jax.Array:
    """cos(e[b], keys[n]). e: [B, d_s], keys: [N, d_s] -> [B, N] float32."""
    e = jnp.asarray(e, jnp.float32)
    keys = jnp.asarray(keys, jnp.float32)
    en = e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), COS_EPS)
    kn = keys / jnp.maximum(jnp.linalg.norm(keys, axis=-1, keepdims=True), COS_EPS)
    return en @ kn.T


def select_pool_entries(
    e: jax.Array, keys: jax.Array, top_m: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Top-M retrieval with normalised cosine weights, eq. (7).

    a_m = s_{i_m} / sum_m' s_{i_m'}. Guard [O]: negative similarities are clamped to 0 before the
    normalisation (a negative sum would flip signs), and if none of the M is positive the weights
    are uniform 1/M.

    Args:
      e: [B, d_s] instruction embeddings; keys: [N, d_s]; top_m: M (static).
    Returns:
      (idx [B, M] int32, weights [B, M] float32 summing to 1 per row, sims [B, N]).
    """
    sims = cosine_similarity(e, keys)
    top, idx = jax.lax.top_k(sims, top_m)
    pos = jnp.maximum(top, 0.0)
    total = pos.sum(axis=-1, keepdims=True)
    ok = total > COS_EPS
    weights = jnp.where(ok, pos / jnp.where(ok, total, 1.0), 1.0 / top_m)
    return idx.astype(jnp.int32), weights, sims


def selection_coefficients(idx: jax.Array, weights: jax.Array, pool_size: int) -> jax.Array:
    """Dense per-example coefficients: coeff[b, idx[b, m]] = weights[b, m], 0 elsewhere.

    Args:
      idx: [B, M]; weights: [B, M]; pool_size: N.
    Returns:
      [B, N] float32.
    """
    onehot = jax.nn.one_hot(idx, pool_size, dtype=jnp.float32)  # [B, M, N]
    return jnp.einsum("bm,bmn->bn", weights.astype(jnp.float32), onehot)


def align_loss(
    e: jax.Array, keys: jax.Array, idx: jax.Array, row_mask: jax.Array | None = None
) -> jax.Array:
    """Key alignment loss, eq. (11): mean over rows of sum_m (1 - cos(e, k_{i_m})).

    Only the selected keys receive gradient (the selection itself is a constant).

    Args:
      e: [B, d_s]; keys: [N, d_s]; idx: [B, M] from select_pool_entries; row_mask: [B] (0 = padding row).
    Returns:
      scalar float32.
    """
    sims = cosine_similarity(jax.lax.stop_gradient(e), keys)
    chosen = jnp.take_along_axis(sims, jax.lax.stop_gradient(idx), axis=1)  # [B, M]
    per_row = jnp.sum(1.0 - chosen, axis=1)
    if row_mask is None:
        return per_row.mean()
    w = jnp.asarray(row_mask, jnp.float32)
    return jnp.sum(per_row * w) / jnp.maximum(w.sum(), 1.0)


def contextual_weights(u: jax.Array) -> jax.Array:
    """w_l = sigmoid(u_l) in [0, 1]. u: [T_max] -> [T_max]."""
    return jax.nn.sigmoid(u)


def running_alpha(memory: dict[str, jax.Array]) -> jax.Array:
    """Mean selection coefficients of the current task so far: [N] (zeros before any instance)."""
    count = memory["coeff_count"]
    return memory["coeff_sum"] / jnp.maximum(count, 1.0)


def contextual_entries(
    pool: dict[str, jax.Array],
    memory: dict[str, jax.Array],
    cfg: PoolConfig,
    num_active: int | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The contextual term (eq. 9) as extra low-rank entries.

    Snapshot slot (l, k) gets coefficient w_l * alpha_bar[l, k] if task l is finished (l < num_done),
    else 0; with include_current, the live pool entries (stop-gradient) get w_t * running alpha of the
    current task t = num_done.

    Args:
      num_active: static number of snapshot slots to include (slots >= it are left out of the
        computation, not just zero-weighted); a runner that knows how many tasks are finished passes
        it to save their cost. None = all cfg.max_tasks slots.
    Returns:
      (a [L, E, d_in, R], b [L, E, R, d_out], coeff [E]) with E = num_active * K (+ N with
      include_current); gradients reach only u (through coeff).
    """
    T = cfg.max_tasks if num_active is None else int(num_active)
    if not 0 <= T <= cfg.max_tasks:
        raise ValueError(f"num_active must be in [0, {cfg.max_tasks}], got {num_active}")
    K = cfg.kept_entries
    w = contextual_weights(pool["u"])[:T]
    done = jnp.arange(T) < memory["num_done"]
    coeff = jnp.where(done[:, None], w[:, None] * memory["snap_alpha"][:T], 0.0).reshape(T * K)
    # [T, L, K, ...] -> [L, T * K, ...]: entries of task l occupy slots l*K .. l*K + K-1.
    a = jnp.swapaxes(memory["snap_a"][:T], 0, 1).reshape(cfg.num_layers, T * K, cfg.d_in, cfg.rank)
    b = jnp.swapaxes(memory["snap_b"][:T], 0, 1).reshape(cfg.num_layers, T * K, cfg.rank, cfg.d_out)
    a, b = jax.lax.stop_gradient(a), jax.lax.stop_gradient(b)
    if cfg.include_current:
        t = jnp.minimum(memory["num_done"], cfg.max_tasks - 1)
        cur = contextual_weights(pool["u"])[t] * jax.lax.stop_gradient(running_alpha(memory))
        coeff = jnp.concatenate([coeff, cur])
        a = jnp.concatenate([a, jax.lax.stop_gradient(pool["a"])], axis=1)
        b = jnp.concatenate([b, jax.lax.stop_gradient(pool["b"])], axis=1)
    return a, b, coeff


def pool_factors(
    pool: dict[str, jax.Array],
    memory: dict[str, jax.Array],
    coeff: jax.Array,
    cfg: PoolConfig,
    num_active: int | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Intrinsic + contextual entries for a batch, concatenated on the entry axis.

    Args:
      coeff: [B, N] selection coefficients (selection_coefficients).
      num_active: see contextual_entries.
    Returns:
      (a [L, N + E, d_in, R], b [L, N + E, R, d_out], coeff [B, N + E]).
    """
    a_ctx, b_ctx, c_ctx = contextual_entries(pool, memory, cfg, num_active)
    B = coeff.shape[0]
    a = jnp.concatenate([pool["a"], a_ctx], axis=1)
    b = jnp.concatenate([pool["b"], b_ctx], axis=1)
    c = jnp.concatenate([coeff, jnp.broadcast_to(c_ctx[None], (B, c_ctx.shape[0]))], axis=1)
    return a, b, c


def pool_lowrank_reference(
    pool: dict[str, jax.Array],
    memory: dict[str, jax.Array],
    coeff: jax.Array,
    cfg: PoolConfig,
    num_active: int | None = None,
) -> dict:
    """The all-entries form {cfg.target: LowRankFactors(a, b, coeff [B, N + E])} (see pool_factors).

    Every example pays for all N + E entries; ``pool_lowrank`` gives the same delta at rank M*R per
    example. Kept as the reference the fast form is tested against and benchmarked next to.
    """

    a, b, c = pool_factors(pool, memory, coeff, cfg, num_active)
    return {cfg.target: LowRankFactors(a=a, b=b, coeff=c)}


def gather_selected(pool: dict[str, jax.Array], idx: jax.Array, weights: jax.Array):
    """The intrinsic increment (eq. 8) as per-example entries: each example's own top-M factors.

    Gathering is differentiable: the pool's a/b get gradient only at the selected entries (summed
    over the examples that chose them), exactly as with dense [B, N] coefficients.

    Args:
      pool: {'a' [L, N, d_in, R], 'b' [L, N, R, d_out], ...}; idx: [B, M] int; weights: [B, M].
    Returns:
      GatheredFactors(a [L, B, M, d_in, R], b [L, B, M, R, d_out], coeff [B, M] float32).
    """

    idx = jax.lax.stop_gradient(idx)
    return GatheredFactors(
        a=jnp.take(pool["a"], idx, axis=1),
        b=jnp.take(pool["b"], idx, axis=1),
        coeff=jnp.asarray(weights, jnp.float32),
    )


def pool_lowrank(
    pool: dict[str, jax.Array],
    memory: dict[str, jax.Array],
    idx: jax.Array,
    weights: jax.Array,
    cfg: PoolConfig,
    num_active: int | None = None,
) -> dict:
    """The model's ``lowrank`` argument for a batch: {cfg.target: (intrinsic[, contextual])}.

    intrinsic: GatheredFactors of each example's M selected entries (rank M*R per example, not N*R);
    contextual: LowRankFactors(a [L, E, d_in, R], b [L, E, R, d_out], coeff [E]) shared by the batch
    (contextual_entries), left out when E = 0. Being batch-shared, the model folds the contextual
    sum into the o_proj weight when its rank E*R makes that cheaper (jaxlvlm.models.lowrank.
    should_fold). The delta equals pool_lowrank_reference's with coeff = selection_coefficients(idx,
    weights, N).

    Args:
      idx, weights: [B, M] from select_pool_entries; num_active: see contextual_entries.
    """

    parts = [gather_selected(pool, idx, weights)]
    a_ctx, b_ctx, c_ctx = contextual_entries(pool, memory, cfg, num_active)
    if c_ctx.shape[0]:
        parts.append(LowRankFactors(a=a_ctx, b=b_ctx, coeff=c_ctx))
    return {cfg.target: tuple(parts)}


def lowrank_delta(x: jax.Array, a: jax.Array, b: jax.Array, coeff: jax.Array) -> jax.Array:
    """One layer's increment without a d_in x d_out matrix: sum_e coeff[b, e] (x @ a[e]) @ b[e].

    Args:
      x: [B, S, d_in]; a: [E, d_in, R]; b: [E, R, d_out]; coeff: [B, E].
    Returns:
      [B, S, d_out].
    """
    h = jnp.einsum("bsd,edr->bser", x, a)
    h = h * coeff[:, None, :, None]
    return jnp.einsum("bser,ero->bso", h, b)


def accumulate_coefficients(
    memory: dict[str, jax.Array], coeff: jax.Array, row_mask: jax.Array | None = None
) -> dict[str, jax.Array]:
    """Adds a batch's selection coefficients to the current task's running mean.

    Args:
      coeff: [B, N]; row_mask: [B] (0 = padding row, not counted).
    Returns:
      the new memory.
    """
    w = (
        jnp.ones(coeff.shape[:1], jnp.float32)
        if row_mask is None
        else jnp.asarray(row_mask, jnp.float32)
    )
    memory = dict(memory)
    memory["coeff_sum"] = memory["coeff_sum"] + jnp.einsum(
        "b,bn->n", w, jax.lax.stop_gradient(coeff)
    )
    memory["coeff_count"] = memory["coeff_count"] + w.sum()
    return memory


def end_of_task_snapshot(
    pool: dict[str, jax.Array], memory: dict[str, jax.Array], cfg: PoolConfig
) -> dict[str, jax.Array]:
    """Freezes the current task's contextual increment and starts the next task.

    Stores, in slot t = num_done, the K pool entries with the largest running mean coefficient
    (all N when K = N), their factors and coefficients; then resets the running sums and
    increments num_done. A stream longer than max_tasks is refused by the runner, not here.

    Returns:
      the new memory.
    """
    alpha = running_alpha(memory)
    K = cfg.kept_entries
    _, keep = jax.lax.top_k(alpha, K)  # [K]
    t = memory["num_done"]
    snap_a = jnp.take(pool["a"], keep, axis=1)  # [L, K, d_in, R]
    snap_b = jnp.take(pool["b"], keep, axis=1)
    memory = dict(memory)
    memory["snap_a"] = memory["snap_a"].at[t].set(jax.lax.stop_gradient(snap_a))
    memory["snap_b"] = memory["snap_b"].at[t].set(jax.lax.stop_gradient(snap_b))
    memory["snap_alpha"] = memory["snap_alpha"].at[t].set(alpha[keep])
    memory["snap_index"] = memory["snap_index"].at[t].set(keep.astype(jnp.int32))
    memory["num_done"] = t + 1
    memory["coeff_sum"] = jnp.zeros_like(memory["coeff_sum"])
    memory["coeff_count"] = jnp.zeros_like(memory["coeff_count"])
    return memory


def snapshot_dropped_mass(memory: dict[str, jax.Array], cfg: PoolConfig) -> jax.Array:
    """Fraction of the current task's coefficient mass that a K < N snapshot would drop: [] in [0, 1]."""
    alpha = running_alpha(memory)
    kept = jax.lax.top_k(alpha, cfg.kept_entries)[0].sum()
    return 1.0 - kept / jnp.maximum(alpha.sum(), COS_EPS)


def instruction_token_mask(batch: dict, image_token_id: int) -> jax.Array:
    """Prompt text tokens: real (attention_mask), not answer, not image placeholders. -> [B, L] float32.

    An input position k+1 holds an answer token when loss_mask[:, k] is 1 (targets are shifted by one).
    """
    ids = batch["input_ids"]
    real = batch["attention_mask"].astype(bool)
    lm = batch["loss_mask"].astype(bool)
    answer = jnp.concatenate([jnp.zeros_like(lm[:, :1]), lm[:, :-1]], axis=1)
    return (real & ~answer & (ids != image_token_id)).astype(jnp.float32)


def mean_token_embedding(
    table: jax.Array, input_ids: jax.Array, token_mask: jax.Array
) -> jax.Array:
    """The lighter instruction embedding: mean of the frozen LLM's input embeddings over masked tokens.

    Args:
      table: [V, C] token embedding table; input_ids: [B, L]; token_mask: [B, L] (0/1).
    Returns:
      [B, C] float32 (zeros for a row without tokens).
    """
    emb = jnp.take(jnp.asarray(table, jnp.float32), input_ids, axis=0)  # [B, L, C]
    m = jnp.asarray(token_mask, jnp.float32)
    return jnp.einsum("blc,bl->bc", emb, m) / jnp.maximum(m.sum(axis=1, keepdims=True), 1.0)
