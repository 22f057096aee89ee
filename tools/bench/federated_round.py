"""Federated round time: K clients' local training stacked by vmap vs the same clients in sequence.

    python -m tools.bench federated_round [--config tiny] [--clients 8] [--steps 4] [--batch 4]
        [--program baseline|stage2] [--out FILE]

One round = every client's init -> S local AdamW steps (LoRA + connector, frozen backbone shared)
-> final, on synthetic batches, through jaxlvlm.methods.pilot.client's 'vmap' and 'loop' backends.
Compilation is excluded (one warm-up round each: the compiled round is cached per program); both
backends' uploads are compared. The frozen backbone is one shared (non-vmapped) argument.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from tools.bench.common import BENCH_CONFIGS, print_table, time_fn, write_json
from tools.bench.sample_vectors import _batch, _model


def round_times(name: str, clients: int, steps: int, batch: int, program: str, iters: int) -> dict:
    from flax import linen as nn

    from jaxlvlm.methods.pilot import programs as PG
    from jaxlvlm.methods.pilot.client import run_clients
    from jaxlvlm.train.lora import init_lora

    cfg, model = _model(name)
    seq = max(BENCH_CONFIGS[name]["seq"], cfg.image_tokens_per_image + 16)
    one = _batch(cfg, batch, seq)
    params = jax.jit(model.init)(
        jax.random.PRNGKey(0),
        one["input_ids"][:1],
        one["attention_mask"][:1],
        pixel_values=one["pixel_values"][:1],
        num_images=one["num_images"][:1],
    )
    params = nn.meta.unbox(params)["params"]
    frozen = {k: v for k, v in params.items() if k != "connector"}
    lora = init_lora(jax.random.PRNGKey(1), cfg.text, ["q_proj", "v_proj"], 8)
    stack = lambda t: jax.tree_util.tree_map(lambda x: jnp.stack([x] * clients), t)
    if program == "baseline":
        prog = PG.baseline_program(PG.LocalTraining(model, lora_alpha=16.0))
        payload = stack({"connector": params["connector"], "lora": lora})
        state = stack({})
    else:
        raise ValueError("only the baseline program is benchmarked here")
    batches = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (clients, steps) + x.shape), one)
    active = jnp.ones((clients, steps), bool)
    keys = jax.random.split(jax.random.PRNGKey(3), clients)

    def go(backend):
        out = run_clients(backend, prog, payload, state, batches, active, keys, frozen)
        jax.block_until_ready(out)
        return out

    up_v, up_l = go("vmap")[0], go("loop")[0]
    diff = max(
        float(jnp.abs(a - b).max())
        for a, b in zip(
            jax.tree_util.tree_leaves(up_v), jax.tree_util.tree_leaves(up_l), strict=True
        )
    )
    t_v = time_fn(lambda: go("vmap"), warmup=0, iters=iters)
    t_l = time_fn(lambda: go("loop"), warmup=0, iters=iters)
    return {
        "config": name,
        "clients": clients,
        "local_steps": steps,
        "batch": batch,
        "seq": seq,
        "vmap_round_s": t_v["median_s"],
        "loop_round_s": t_l["median_s"],
        "speedup": t_l["median_s"] / t_v["median_s"],
        "max_abs_diff_uploads": diff,
        "upload_bytes_per_client": int(
            sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(up_v)) // clients
        ),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="tiny", choices=sorted(BENCH_CONFIGS))
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--program", default="baseline")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--out", default="bench_results/federated_round.json")
    a = p.parse_args(argv)
    r = round_times(a.config, a.clients, a.steps, a.batch, a.program, a.iters)
    print_table([r], list(r))
    write_json(a.out, r)
    return r


if __name__ == "__main__":
    main()
