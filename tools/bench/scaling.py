"""Figure 4: how the train step's time and memory grow with sequence length, batch size, image
tokens and model width (jaxlvlm only; the 'small' bench config is the centre point).

Peak memory is XLA's own account of the compiled step (arguments + outputs + temporaries - aliased,
from ``compiled.memory_analysis()``), which is exact and not disturbed by other processes.

python -m tools.bench scaling [--iters 3] [--out bench_results/scaling.json] [--plot BENCHMARKS_scaling.png]
"""

from __future__ import annotations

import argparse
import copy

import numpy as np

from tools.bench.common import BENCH_CONFIGS, print_table, time_fn, write_json

SWEEPS = {
    "seq": [128, 256, 512, 1024],
    "batch": [2, 4, 8, 16],
    "image": [32, 64, 96, 128],  # image side in pixels; patch 8 -> 16, 64, 144, 256 image tokens
    "width": [256, 512, 768, 1024],  # LLM hidden size (heads scale with it, head_dim 64)
}


def lvlm_config(c: dict):
    from jaxlvlm.models.config import LVLMConfig, TextConfig, VisionConfig

    v, t = c["vision"], c["text"]
    return LVLMConfig(
        vision=VisionConfig(
            style="clip",
            image_size=v["image"],
            patch_size=v["patch"],
            hidden_size=v["hidden"],
            intermediate_size=v["inter"],
            num_layers=v["layers"],
            num_heads=v["heads"],
        ),
        text=TextConfig(
            arch="llama",
            vocab_size=t["vocab"],
            hidden_size=t["hidden"],
            intermediate_size=t["inter"],
            num_layers=t["layers"],
            num_heads=t["heads"],
            num_kv_heads=t["kv_heads"],
            max_position_embeddings=4096,
        ),
        connector="mlp2x_gelu",
        image_token_id=3,
        vision_feature_layer=-2,
    )


def make_batch(cfg, batch: int, seq: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n_img = cfg.image_tokens_per_image
    if n_img + 8 > seq:
        raise ValueError(f"seq {seq} too short for {n_img} image tokens")
    ids = rng.integers(4, cfg.text.vocab_size, size=(batch, seq)).astype(np.int32)
    ids[:, 1 : 1 + n_img] = cfg.image_token_id
    targets = np.zeros_like(ids)
    targets[:, :-1] = ids[:, 1:]
    loss_mask = np.zeros(ids.shape, np.float32)
    loss_mask[:, 1 + n_img : -1] = 1.0
    size = cfg.vision.image_size
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "targets": targets,
        "loss_mask": loss_mask,
        "pixel_values": rng.standard_normal((batch, 1, size, size, 3)).astype(np.float32),
        "num_images": np.ones((batch,), np.int32),
        "task_ids": np.zeros((batch,), np.int32),
        "sample_index": np.arange(batch, dtype=np.int32),
    }


def measure(cfg, batch: dict, iters: int, runtime: dict | None = None) -> dict:
    import jax

    from jaxlvlm.models import build_model
    from jaxlvlm.models.config import RuntimeConfig
    from jaxlvlm.sharding import DEFAULT_RULES, make_mesh
    from jaxlvlm.train.config_schema import base_config
    from jaxlvlm.train.flops import train_step_flops
    from jaxlvlm.train.optimizer import frozen_mask
    from jaxlvlm.train.setup import make_forward, plan_train_state
    from jaxlvlm.train.step import make_train_step

    model = build_model(cfg, RuntimeConfig(**(runtime or {})))
    config = base_config()
    config.train.steps = 1000
    mesh = make_mesh((1, 1, 1), jax.devices()[:1])
    setup = plan_train_state(model, cfg, config, mesh, DEFAULT_RULES)
    state = setup.create()
    step = jax.jit(
        make_train_step(make_forward(model, 1.0), setup.tx, frozen_mask(setup.labels), num_tasks=1),
        donate_argnums=(0,),
    )
    dev_batch = jax.device_put(batch)
    compiled = step.lower(state, dev_batch).compile()
    mem = compiled.memory_analysis()
    peak = None
    if mem is not None:
        peak = (
            mem.argument_size_in_bytes
            + mem.output_size_in_bytes
            + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes
        )
    holder = {"state": state}

    def run():
        holder["state"], m = compiled(holder["state"], dev_batch)
        jax.block_until_ready(m["loss"])

    t = time_fn(run, warmup=1, iters=iters)
    b, length = batch["input_ids"].shape
    flops = train_step_flops(cfg, b, length, 1)
    return {
        "step_s": t["median_s"],
        "tok_s": b * length / t["median_s"],
        "peak_mem_MiB": (peak or 0) / 2**20,
        "gflop_per_step": flops / 1e9,
        "achieved_gflops": flops / t["median_s"] / 1e9,
    }


def sweep(iters: int) -> list[dict]:
    base = BENCH_CONFIGS["small"]
    rows = []
    for axis, values in SWEEPS.items():
        for v in values:
            c = copy.deepcopy(base)
            batch_size, seq = c["batch"], c["seq"]
            if axis == "seq":
                seq = v
            elif axis == "batch":
                batch_size = v
            elif axis == "image":
                c["vision"]["image"] = v
                seq = max(seq, (v // c["vision"]["patch"]) ** 2 + 64)
            elif axis == "width":
                c["text"]["hidden"] = v
                c["text"]["heads"] = v // 64
                c["text"]["kv_heads"] = max(1, v // 128)
                c["text"]["inter"] = int(v * 2.6875)
            cfg = lvlm_config(c)
            row = {"axis": axis, "value": v, "batch": batch_size, "seq": seq}
            row.update(measure(cfg, make_batch(cfg, batch_size, seq), iters))
            print(row, flush=True)
            rows.append(row)
    return rows


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for i, axis in enumerate(SWEEPS):
        sel = [r for r in rows if r["axis"] == axis]
        xs = [r["value"] for r in sel]
        axes[0, i].plot(xs, [r["step_s"] for r in sel], "o-")
        axes[0, i].set_title(f"step time vs {axis}")
        axes[0, i].set_ylabel("s")
        axes[1, i].plot(xs, [r["peak_mem_MiB"] for r in sel], "o-", color="C1")
        axes[1, i].set_title(f"peak memory vs {axis}")
        axes[1, i].set_ylabel("MiB")
        axes[1, i].set_xlabel(axis)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--out", default="bench_results/scaling.json")
    p.add_argument("--plot", default="docs/bench_scaling.png")
    args = p.parse_args(argv)
    rows = sweep(args.iters)
    print_table(
        rows,
        ["axis", "value", "batch", "seq", "step_s", "tok_s", "peak_mem_MiB", "achieved_gflops"],
    )
    if args.plot:
        import os

        os.makedirs(os.path.dirname(args.plot) or ".", exist_ok=True)
        plot(rows, args.plot)
    payload = {"rows": rows, "argv": argv}
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
