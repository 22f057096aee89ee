"""Adapt-∞ sample-vector throughput: vmapped per-sample LoRA gradients vs a per-sample loop, and the
memory of the block Rademacher projection at a large projection size.

    python -m tools.bench sample_vectors [--config tiny] [--batch 8] [--dim 1024] [--out FILE]

Throughput: samples/s of (per-sample grads of one layer's LoRA + projection + normalisation) for
one batch: the vmapped path (one jitted call), the one-pass mixture path (per-sample LoRA copies in
one batched forward/backward) and a loop of jitted single-sample calls, on the same LVLM (tools.bench.common BENCH_CONFIGS). Memory: XLA's temp-buffer size of the projection at
P = 1M parameters, k = 8192 (Adapt-∞'s default), next to the 32 GiB the full Π would take.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np

from tools.bench.common import BENCH_CONFIGS, print_table, time_fn, write_json


def _model(name: str):
    from jaxlvlm.models import build_model
    from jaxlvlm.models.config import LVLMConfig, RuntimeConfig, TextConfig, VisionConfig

    b = BENCH_CONFIGS[name]
    v, t = b["vision"], b["text"]
    cfg = LVLMConfig(
        vision=VisionConfig(
            image_size=v["image"],
            patch_size=v["patch"],
            hidden_size=v["hidden"],
            intermediate_size=v["inter"],
            num_layers=v["layers"],
            num_heads=v["heads"],
        ),
        text=TextConfig(
            vocab_size=t["vocab"],
            hidden_size=t["hidden"],
            intermediate_size=t["inter"],
            num_layers=t["layers"],
            num_heads=t["heads"],
            num_kv_heads=t["kv_heads"],
        ),
        image_token_id=3,
    )
    return cfg, build_model(cfg, runtime=RuntimeConfig())


def _batch(cfg, batch: int, seq: int) -> dict:
    rng = np.random.default_rng(0)
    n_img = cfg.image_tokens_per_image
    ids = rng.integers(10, cfg.text.vocab_size, size=(batch, seq)).astype(np.int32)
    ids[:, 1 : 1 + n_img] = cfg.image_token_id
    targets = np.pad(ids[:, 1:], ((0, 0), (0, 1)))
    loss_mask = np.zeros((batch, seq), np.float32)
    loss_mask[:, seq // 2 : seq - 1] = 1.0
    v = cfg.vision
    return {
        "input_ids": jnp.asarray(ids),
        "attention_mask": jnp.ones((batch, seq), jnp.int32),
        "targets": jnp.asarray(targets),
        "loss_mask": jnp.asarray(loss_mask),
        "pixel_values": jnp.asarray(
            rng.normal(size=(batch, 1, v.image_size, v.image_size, 3)), jnp.float32
        ),
        "num_images": jnp.ones((batch,), jnp.int32),
    }


def throughput(name: str, batch: int, dim: int, iters: int) -> dict:
    from jaxlvlm.methods.adapt_inf import model_features as MF
    from jaxlvlm.methods.adapt_inf.projection import normalize_rows, rademacher_project
    from jaxlvlm.methods.adapt_inf.sample_grads import flatten_per_sample, sample_vectors
    from jaxlvlm.train.lora import init_lora

    cfg, model = _model(name)
    seq = max(BENCH_CONFIGS[name]["seq"], cfg.image_tokens_per_image + 16)
    data = _batch(cfg, batch, seq)
    params = jax.jit(model.init)(
        jax.random.PRNGKey(0),
        data["input_ids"][:1],
        data["attention_mask"][:1],
        pixel_values=data["pixel_values"][:1],
        num_images=data["num_images"][:1],
    )
    from flax import linen as nn

    params = nn.meta.unbox(params)["params"]
    lora = init_lora(jax.random.PRNGKey(1), cfg.text, ["q_proj", "v_proj"], 8)
    lora = jax.tree_util.tree_map(lambda x: x + 0.01, lora)  # non-zero a and b: both carry gradient
    layer = cfg.text.num_layers - 1
    loss_fn = MF.sample_loss_fn(model, params, lora, layer, 16.0)
    part = MF.layer_slice(lora, layer)
    key = jax.random.PRNGKey(2)

    vmapped = jax.jit(lambda b: sample_vectors(loss_fn, part, b, key, dim))

    def mixture_fn(b):
        g = flatten_per_sample(MF.mixture_sample_grads(model, params, lora, b, layer, 16.0))
        return normalize_rows(rademacher_project(g, key, dim))

    mixture = jax.jit(mixture_fn)
    grad_one = jax.jit(jax.grad(loss_fn))
    project = jax.jit(lambda g: normalize_rows(rademacher_project(g, key, dim)))

    def loop():
        rows = []
        for i in range(batch):
            g = grad_one(part, jax.tree_util.tree_map(lambda x, i=i: x[i], data))
            rows.append(flatten_per_sample(jax.tree_util.tree_map(lambda x: x[None], g)))
        return project(jnp.concatenate(rows)).block_until_ready()

    u_v = vmapped(data)[0]
    u_l = loop()
    max_diff = float(jnp.abs(u_v - u_l).max())
    max_diff_mix = float(jnp.abs(mixture(data) - u_l).max())
    t_v = time_fn(lambda: vmapped(data)[0].block_until_ready(), warmup=1, iters=iters)
    t_l = time_fn(loop, warmup=1, iters=iters)
    t_m = time_fn(lambda: mixture(data).block_until_ready(), warmup=1, iters=iters)
    num_params = sum(x.size for x in jax.tree_util.tree_leaves(part))
    return {
        "config": name,
        "batch": batch,
        "seq": seq,
        "lora_params_of_layer": int(num_params),
        "dim": dim,
        "vmap_samples_per_s": batch / t_v["median_s"],
        "loop_samples_per_s": batch / t_l["median_s"],
        "mixture_samples_per_s": batch / t_m["median_s"],
        "speedup": t_l["median_s"] / t_v["median_s"],
        "max_abs_diff_vmap_vs_loop": max_diff,
        "max_abs_diff_mixture_vs_loop": max_diff_mix,
    }


def projection_memory(num_params: int = 1 << 20, dim: int = 8192, batch: int = 8) -> dict:
    from jaxlvlm.methods.adapt_inf.projection import rademacher_project

    fn = functools.partial(rademacher_project, dim=dim, block_k=128, block_p=16384)
    g = jax.ShapeDtypeStruct((batch, num_params), jnp.float32)
    compiled = jax.jit(fn).lower(g, jax.random.PRNGKey(0)).compile()
    mem = compiled.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
    return {
        "num_params": num_params,
        "dim": dim,
        "batch": batch,
        "temp_bytes": temp,
        "input_bytes": batch * num_params * 4,
        "full_projection_bytes": dim * num_params * 4,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="tiny", choices=sorted(BENCH_CONFIGS))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--out", default="bench_results/sample_vectors.json")
    a = p.parse_args(argv)
    tp = throughput(a.config, a.batch, a.dim, a.iters)
    mem = projection_memory()
    print_table([tp], list(tp))
    print_table([mem], list(mem))
    write_json(a.out, {"throughput": tp, "projection_memory": mem})
    return {"throughput": tp, "projection_memory": mem}


if __name__ == "__main__":
    main()
