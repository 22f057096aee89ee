"""Continual LLaVA's pool vs plain LoRA: train-step time on the same frozen LVLM (issue 6's target:
at most 15% overhead).

    python -m tools.bench prompt_pool [--config tiny] [--tasks 4] [--iters 5] [--out FILE]

Both steps are jitted value_and_grad + Adam over the low-rank state only (the LVLM is frozen), on
the same batch. LoRA: rank 8 on o_proj. Pool: N=30 entries, top-5, rank 8 on o_proj, with the
instruction embedding (mean token embedding) and selection inside the step, and contextual entries
of ``--tasks`` finished tasks: all N entries per snapshot (exact) and the K=5 largest (compact).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

from tools.bench.common import BENCH_CONFIGS, print_table, time_fn, write_json
from tools.bench.sample_vectors import _batch, _model


def _nll(logits, batch):
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, batch["targets"][..., None], axis=-1)[..., 0]
    m = batch["loss_mask"]
    return jnp.sum((logz - picked) * m) / jnp.maximum(m.sum(), 1.0)


def _apply(model, params, batch, lowrank):
    return model.apply(
        {"params": params},
        batch["input_ids"],
        batch["attention_mask"],
        pixel_values=batch["pixel_values"],
        num_images=batch["num_images"],
        lowrank=lowrank,
    )


def _lora_step(model, params, tx):
    from jaxlvlm.models.lowrank import LowRankFactors

    def loss(lora, batch):
        lr = {"o_proj": LowRankFactors(lora["a"], lora["b"], jnp.full((1,), 2.0))}
        return _nll(_apply(model, params, batch, lr), batch)

    @jax.jit
    def step(lora, opt, batch):
        val, g = jax.value_and_grad(loss)(lora, batch)
        upd, opt = tx.update(g, opt, lora)
        return optax.apply_updates(lora, upd), opt, val

    return step


def _pool_step(model, params, tx, pcfg, image_token_id):
    from jaxlvlm.methods import prompt_pool as pp

    table = params["llm"]["embed_tokens"]["embedding"]

    def loss(pool, memory, batch):
        mask = pp.instruction_token_mask(batch, image_token_id)
        e = pp.mean_token_embedding(table, batch["input_ids"], mask)
        idx, w, _ = pp.select_pool_entries(e, jax.lax.stop_gradient(pool["keys"]), pcfg.top_m)
        coeff = pp.selection_coefficients(idx, w, pcfg.pool_size)
        return _nll(_apply(model, params, batch, pp.pool_lowrank(pool, memory, coeff, pcfg)), batch)

    @jax.jit
    def step(pool, opt, memory, batch):
        val, g = jax.value_and_grad(loss)(pool, memory, batch)
        upd, opt = tx.update(g, opt, pool)
        return optax.apply_updates(pool, upd), opt, val

    return step


def run(name: str, tasks: int, iters: int) -> list[dict]:
    from jaxlvlm.methods import prompt_pool as pp

    cfg, model = _model(name)
    b = BENCH_CONFIGS[name]
    seq = max(b["seq"], cfg.image_tokens_per_image + 16)
    batch = _batch(cfg, b["batch"], seq)
    params = model.init(
        jax.random.PRNGKey(0),
        batch["input_ids"],
        batch["attention_mask"],
        pixel_values=batch["pixel_values"],
        num_images=batch["num_images"],
    )["params"]
    params = jax.tree_util.tree_map(
        lambda x: getattr(x, "value", x), params, is_leaf=lambda x: hasattr(x, "value")
    )
    text = cfg.text
    d_in, d_out, L = text.num_heads * text.resolved_head_dim, text.hidden_size, text.num_layers
    tx = optax.adam(1e-3)
    rows = []

    a = jax.random.normal(jax.random.PRNGKey(1), (L, 1, d_in, 8)) / jnp.sqrt(d_in)
    lora = {"a": a, "b": jnp.zeros((L, 1, 8, d_out)) + 1e-3}
    lstep = _lora_step(model, params, tx)
    state = {"lora": lora, "opt": tx.init(lora)}

    def lora_call():
        state["lora"], state["opt"], v = lstep(state["lora"], state["opt"], batch)
        v.block_until_ready()

    base = time_fn(lora_call, warmup=2, iters=iters)
    rows.append({"variant": "lora r8 o_proj", "entries": 1, **base, "overhead": 0.0})

    for label, k in (("pool N30 M5 r8, exact snapshots", 0), ("pool N30 M5 r8, K=5 snapshots", 5)):
        pcfg = pp.PoolConfig(
            pool_size=30,
            top_m=5,
            rank=8,
            embed_dim=text.hidden_size,
            num_layers=L,
            d_in=d_in,
            d_out=d_out,
            max_tasks=tasks,
            snapshot_entries=k,
        )
        pool = pp.init_pool(jax.random.PRNGKey(2), pcfg)
        memory = pp.init_memory(pcfg)
        for _ in range(tasks):  # fill every snapshot slot so the contextual term is all there
            memory = pp.accumulate_coefficients(memory, jnp.full((1, 30), 1 / 30))
            memory = pp.end_of_task_snapshot(pool, memory, pcfg)
        pstep = _pool_step(model, params, tx, pcfg, cfg.image_token_id)
        ps = {"pool": pool, "opt": tx.init(pool)}

        def pool_call(ps=ps, pstep=pstep, memory=memory):
            ps["pool"], ps["opt"], v = pstep(ps["pool"], ps["opt"], memory, batch)
            v.block_until_ready()

        t = time_fn(pool_call, warmup=2, iters=iters)
        entries = 30 + tasks * pcfg.kept_entries
        rows.append(
            {
                "variant": label,
                "entries": entries,
                **t,
                "overhead": t["median_s"] / base["median_s"] - 1.0,
            }
        )
    return rows


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m tools.bench prompt_pool")
    p.add_argument("--config", default="tiny", choices=sorted(BENCH_CONFIGS))
    p.add_argument("--tasks", type=int, default=4)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    rows = run(a.config, a.tasks, a.iters)
    print_table(rows, ["variant", "entries", "median_s", "min_s", "overhead"])
    if a.out:
        write_json(
            a.out, {"figure": "prompt_pool", "config": a.config, "tasks": a.tasks, "rows": rows}
        )
