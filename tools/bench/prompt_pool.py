"""Continual LLaVA's pool vs plain LoRA: train-step time on the same frozen LVLM (issue 6's target:
at most 15% overhead).

    python -m tools.bench prompt_pool [--config small] [--tasks 4] [--iters 7] [--out FILE]

Every step is jitted value_and_grad + Adam over the low-rank state only (the LVLM is frozen), on
the same batch. LoRA: rank 8 on o_proj. Pool: N=30 entries, top-5, rank 8 on o_proj, with the
instruction embedding (mean token embedding) and selection inside the step, and contextual entries
of ``--tasks`` finished tasks: all N entries per snapshot (exact) and the K=5 largest (compact).
Each pool setting runs in the fast form (``pool_lowrank``: gathered top-M entries per example, the
contextual part batch-shared) and in the all-entries reference form (``pool_lowrank_reference``,
every example pays for all N + T*K entries: the form before issue 6's fix). The variants are timed
interleaved (one call of each per round, the order rotating), so load from other processes on the
machine hits all of them alike; overhead = median / LoRA's median - 1 (overhead_min: the same with
the fastest call of each; overhead_paired: median over rounds of the ratio to LoRA's call in the
same round). flops_overhead is XLA's flop count of the compiled step against LoRA's: no
timing noise, but blind to memory traffic. ``selection`` times the instruction embedding + top-M
selection alone (a share of the LoRA step).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from tools.bench.common import BENCH_CONFIGS, print_table, write_json
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


def _selection_fn(params, pcfg, image_token_id):
    """batch, keys -> (idx, weights): the runner's mean-token instruction embedding + top-M."""
    from jaxlvlm.methods import prompt_pool as pp

    table = params["llm"]["embed_tokens"]["embedding"]

    def select(batch, keys):
        mask = pp.instruction_token_mask(batch, image_token_id)
        e = pp.mean_token_embedding(table, batch["input_ids"], mask)
        idx, w, _ = pp.select_pool_entries(e, jax.lax.stop_gradient(keys), pcfg.top_m)
        return idx, w

    return select


def _pool_step(model, params, tx, pcfg, image_token_id, reference: bool):
    from jaxlvlm.methods import prompt_pool as pp

    select = _selection_fn(params, pcfg, image_token_id)

    def loss(pool, memory, batch):
        idx, w = select(batch, pool["keys"])
        if reference:
            coeff = pp.selection_coefficients(idx, w, pcfg.pool_size)
            lowrank = pp.pool_lowrank_reference(pool, memory, coeff, pcfg)
        else:
            lowrank = pp.pool_lowrank(pool, memory, idx, w, pcfg)
        return _nll(_apply(model, params, batch, lowrank), batch)

    @jax.jit
    def step(pool, opt, memory, batch):
        val, g = jax.value_and_grad(loss)(pool, memory, batch)
        upd, opt = tx.update(g, opt, pool)
        return optax.apply_updates(pool, upd), opt, val

    return step


def _compiled(step, *args):
    """(compiled executable, XLA's flop count) of a jitted step for these arguments; the timing
    calls the same executable, so nothing compiles twice."""
    compiled = step.lower(*args).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return compiled, float((cost or {}).get("flops", float("nan")))


def time_interleaved(
    fns: dict[str, Callable[[], object]], warmup: int, iters: int
) -> dict[str, dict[str, float]]:
    """Times every fn (which blocks until done) once per round, the order rotating each round, so
    a change in the machine's load during the run reaches every variant alike. Seconds per call."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times = {n: [] for n in names}
    for r in range(iters):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            t0 = time.perf_counter()
            fns[n]()
            times[n].append(time.perf_counter() - t0)
    return {
        n: {
            "median_s": statistics.median(t),
            "min_s": min(t),
            "mean_s": statistics.fmean(t),
            "iters": iters,
            "times_s": t,
        }
        for n, t in times.items()
    }


def run(name: str, tasks: int, iters: int, warmup: int = 2) -> list[dict]:
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
    calls: dict[str, Callable[[], object]] = {}
    info: dict[str, dict] = {}

    a = jax.random.normal(jax.random.PRNGKey(1), (L, 1, d_in, 8)) / jnp.sqrt(d_in)
    lora = {"a": a, "b": jnp.zeros((L, 1, 8, d_out)) + 1e-3}
    state = {"lora": lora, "opt": tx.init(lora)}
    lstep, lflops = _compiled(_lora_step(model, params, tx), state["lora"], state["opt"], batch)

    def lora_call():
        state["lora"], state["opt"], v = lstep(state["lora"], state["opt"], batch)
        v.block_until_ready()

    calls["lora r8 o_proj"] = lora_call
    info["lora r8 o_proj"] = {"entries": 1, "form": "lora", "flops": lflops}

    select_cfg = None
    for label, k in (("exact snapshots", 0), ("K=5 snapshots", 5)):
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
        select_cfg = pcfg
        pool = pp.init_pool(jax.random.PRNGKey(2), pcfg)
        pool["b"] = pool["b"] + 1e-3  # non-zero increments, as after some training
        memory = pp.init_memory(pcfg)
        for _ in range(tasks):  # fill every snapshot slot so the contextual term is all there
            memory = pp.accumulate_coefficients(memory, jnp.full((1, 30), 1 / 30))
            memory = pp.end_of_task_snapshot(pool, memory, pcfg)
        entries = 30 + tasks * pcfg.kept_entries
        for form, reference in (("gathered", False), ("all entries (reference)", True)):
            ps = {"pool": pool, "opt": tx.init(pool)}
            pstep, pflops = _compiled(
                _pool_step(model, params, tx, pcfg, cfg.image_token_id, reference),
                ps["pool"],
                ps["opt"],
                memory,
                batch,
            )

            def pool_call(ps=ps, pstep=pstep, memory=memory):
                ps["pool"], ps["opt"], v = pstep(ps["pool"], ps["opt"], memory, batch)
                v.block_until_ready()

            key = f"pool N30 M5 r8, {label}, {form}"
            calls[key] = pool_call
            info[key] = {"entries": entries, "form": form, "flops": pflops}

    keys = pp.init_pool(jax.random.PRNGKey(2), select_cfg)["keys"]
    select, sflops = _compiled(
        jax.jit(_selection_fn(params, select_cfg, cfg.image_token_id)), batch, keys
    )
    calls["selection only (embedding + top-M)"] = lambda: select(batch, keys)[1].block_until_ready()
    info["selection only (embedding + top-M)"] = {"entries": 0, "form": "piece", "flops": sflops}

    times = time_interleaved(calls, warmup=warmup, iters=iters)
    base = times["lora r8 o_proj"]["median_s"]
    base_min = times["lora r8 o_proj"]["min_s"]
    base_rounds = times["lora r8 o_proj"]["times_s"]
    return [
        {
            "variant": n,
            **info[n],
            **t,
            "overhead": t["median_s"] / base - 1.0,
            "overhead_min": t["min_s"] / base_min - 1.0,
            # per round against LoRA's call of the same round (seconds apart): robust to load drift
            "overhead_paired": statistics.median(
                v / w for v, w in zip(t["times_s"], base_rounds, strict=True)
            )
            - 1.0,
            "flops_overhead": info[n]["flops"] / lflops - 1.0,
        }
        for n, t in times.items()
    ]


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m tools.bench prompt_pool")
    p.add_argument("--config", default="small", choices=sorted(BENCH_CONFIGS))
    p.add_argument("--tasks", type=int, default=4)
    p.add_argument("--iters", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    rows = run(a.config, a.tasks, a.iters, a.warmup)
    print_table(
        rows,
        [
            "variant",
            "entries",
            "median_s",
            "min_s",
            "overhead",
            "overhead_paired",
            "overhead_min",
            "flops_overhead",
        ],
    )
    if a.out:
        write_json(
            a.out,
            {
                "figure": "prompt_pool",
                "command": "python -m tools.bench prompt_pool " + " ".join(argv),
                "config": a.config,
                "tasks": a.tasks,
                "rows": rows,
            },
        )
