"""Figures 1 and 2: train step (forward + backward + AdamW) of the same LLaVA, jaxlvlm vs PyTorch.

Both sides run the same weights (a transformers LlavaForConditionalGeneration with random weights,
saved as safetensors and loaded by jaxlvlm's ``load_pretrained``), the same batch, float32, AdamW with
global-norm clipping. Reports tokens/s of each, their ratio, and jaxlvlm's model FLOPs utilisation
against this machine's measured fp32 matmul peak (measured in the same run).

python -m tools.bench train_step --configs tiny,small,medium [--iters 5] [--loss-chunk 64]
    [--out bench_results/train_step.json]

--loss-chunk N > 0 adds a third side, jaxlvlm with config.train.loss_chunk=N (chunked LM head +
cross-entropy), timed interleaved with the other two and reported as jax_chunk_* columns, with the
XLA peak memory of both jaxlvlm steps (compiled.memory_analysis(), exact, unaffected by load).
--bf16 adds a side with RuntimeConfig.compute_dtype='bfloat16' (fp32 master weights and optimizer
state, bf16 matmuls with fp32 accumulation, fp32 logits), reported as jax_bf16_* columns; its MFU
is against the same fp32 peak (the bf16 matmul peak here is about 1.8x that).
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from tools.bench.common import BENCH_CONFIGS, print_table, time_fn, write_json
from tools.bench.hf_reference import build_torch_llava, make_inputs, save_torch_llava
from tools.bench.kernel_cost import KernelCost
from tools.bench.quiet import OthersMonitor, spread, theoretical_fp32_peak, validity

LR = 1e-4
MAX_GRAD_NORM = 1.0


def jax_batch(inputs: dict) -> dict:
    """transformers-layout inputs -> jaxlvlm batch contract (targets shifted, NHWC pixels)."""
    ids = inputs["input_ids"].astype(np.int32)
    labels = inputs["labels"]
    targets = np.zeros_like(ids)
    targets[:, :-1] = ids[:, 1:]
    loss_mask = np.zeros(ids.shape, np.float32)
    loss_mask[:, :-1] = (labels[:, 1:] != -100).astype(np.float32)
    pixels = np.transpose(inputs["pixel_values_nchw"], (0, 2, 3, 1))[:, None]
    b = ids.shape[0]
    return {
        "input_ids": ids,
        "attention_mask": inputs["attention_mask"].astype(np.int32),
        "targets": targets,
        "loss_mask": loss_mask,
        "pixel_values": pixels.astype(np.float32),
        "num_images": np.ones((b,), np.int32),
        "task_ids": np.zeros((b,), np.int32),
        "sample_index": np.arange(b, dtype=np.int32),
    }


def jax_train_step(
    model_dir: str, batch: dict, runtime_overrides: dict | None = None, loss_chunk: int = 0
):
    """Returns (run_one_step, lvlm_config, compile_seconds, first_loss, peak_memory_bytes) for
    jaxlvlm's jitted train step (config.train.loss_chunk = loss_chunk)."""
    import time

    import jax

    from jaxlvlm.convert import load_pretrained
    from jaxlvlm.models import build_model
    from jaxlvlm.models.config import RuntimeConfig
    from jaxlvlm.sharding import DEFAULT_RULES, make_mesh
    from jaxlvlm.train.config_schema import base_config
    from jaxlvlm.train.setup import jit_train_step, plan_train_state

    cfg, params = load_pretrained(model_dir)
    runtime = RuntimeConfig(**(runtime_overrides or {}))
    model = build_model(cfg, runtime)
    config = base_config()
    config.train.steps = 1000
    config.optim.lr = LR
    config.optim.warmup_steps = 0
    config.optim.weight_decay = 0.0
    config.optim.max_grad_norm = MAX_GRAD_NORM
    config.train.loss_chunk = loss_chunk
    mesh = make_mesh((1, 1, 1), jax.devices()[:1])
    setup = plan_train_state(model, cfg, config, mesh, DEFAULT_RULES)
    holder = {"state": setup.create(params)}
    step = jit_train_step(model, setup, config, mesh, DEFAULT_RULES, num_tasks=1)
    dev_batch = jax.device_put({k: np.asarray(v) for k, v in batch.items()})

    def run():
        holder["state"], metrics = step(holder["state"], dev_batch)
        return jax.block_until_ready(metrics["loss"])

    t0 = time.perf_counter()
    first_loss = float(run())
    compile_s = time.perf_counter() - t0
    return run, cfg, compile_s, first_loss, step_peak_memory(model, setup, config, dev_batch)


def step_peak_memory(model, setup, config, dev_batch) -> int:
    """XLA's own account of the compiled step (arguments + outputs + temporaries - aliases), bytes;
    the same step function as jit_train_step builds, lowered on abstract state (no memory used)."""
    import jax

    from jaxlvlm.train.chunked_loss import chunked_step_kwargs
    from jaxlvlm.train.optimizer import frozen_mask
    from jaxlvlm.train.setup import make_forward
    from jaxlvlm.train.step import make_train_step

    chunked = chunked_step_kwargs(model, config, None, None)
    step = make_train_step(
        make_forward(model, config.lora.alpha, compute_logits=not chunked),
        setup.tx,
        frozen_mask(setup.labels),
        num_tasks=1,
        **chunked,
    )
    mem = (
        jax.jit(step, donate_argnums=(0,))
        .lower(setup.abstract, dev_batch)
        .compile()
        .memory_analysis()
    )
    if mem is None:
        return 0
    return (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        + mem.temp_size_in_bytes
        - mem.alias_size_in_bytes
    )


def torch_train_step(model, inputs: dict):
    import torch

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    t = {
        "input_ids": torch.from_numpy(inputs["input_ids"]),
        "attention_mask": torch.from_numpy(inputs["attention_mask"]),
        "pixel_values": torch.from_numpy(inputs["pixel_values_nchw"]),
        "labels": torch.from_numpy(inputs["labels"]),
    }

    def run():
        out = model(**t)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out.loss)

    first_loss = run()
    return run, first_loss


def bench_config(
    name: str, iters: int, peak_flops: float, loss_chunk: int = 0, bf16: bool = False
) -> dict:
    from jaxlvlm.train.flops import train_step_flops

    cfg_dict = BENCH_CONFIGS[name]
    torch_model = build_torch_llava(cfg_dict)
    n_params = sum(p.numel() for p in torch_model.parameters())
    inputs = make_inputs(cfg_dict)
    batch = jax_batch(inputs)
    tokens = int(np.prod(batch["input_ids"].shape))
    chunk_run = None
    with tempfile.TemporaryDirectory() as d:
        save_torch_llava(torch_model, d)
        jax_run, lvlm_cfg, compile_s, jax_loss0, jax_mem = jax_train_step(d, batch)
        if loss_chunk > 0:
            chunk_run, _, chunk_compile_s, chunk_loss0, chunk_mem = jax_train_step(
                d, batch, loss_chunk=loss_chunk
            )
        bf16_run = None
        if bf16:
            bf16_run, _, _, bf16_loss0, bf16_mem = jax_train_step(
                d, batch, {"compute_dtype": "bfloat16"}
            )
    torch_run, torch_loss0 = torch_train_step(torch_model, inputs)
    # Interleave the sides so machine noise hits all alike; watch what else uses the CPU meanwhile.
    jt, tt, ct, bt = [], [], [], []
    every = {"jax": [], "torch": []}
    kernel = {"jax": KernelCost(), "torch": KernelCost()}
    per_block = max(1, iters // 2)
    with OthersMonitor() as monitor:
        for _ in range(2):
            with kernel["jax"].over(per_block + 1):  # the warm-up step runs inside too
                j = time_fn(jax_run, warmup=1, iters=per_block)
            with kernel["torch"].over(per_block + 1):
                t = time_fn(torch_run, warmup=1, iters=per_block)
            jt.append(j["median_s"])
            tt.append(t["median_s"])
            every["jax"] += j["times"]
            every["torch"] += t["times"]
            if chunk_run is not None:
                ct.append(time_fn(chunk_run, warmup=1, iters=per_block)["median_s"])
            if bf16_run is not None:
                bt.append(time_fn(bf16_run, warmup=1, iters=per_block)["median_s"])
    quiet = monitor.result()
    spreads = {side: spread(ts) for side, ts in every.items()}
    why = validity(quiet, spreads)
    jax_s, torch_s = float(np.median(every["jax"])), float(np.median(every["torch"]))
    flops = train_step_flops(lvlm_cfg, batch["input_ids"].shape[0], batch["input_ids"].shape[1], 1)
    extra = {}
    if chunk_run is not None:
        chunk_s = float(np.median(ct))
        extra = {
            "loss_chunk": loss_chunk,
            "jax_chunk_step_s": chunk_s,
            "jax_chunk_tok_s": tokens / chunk_s,
            "chunk_speedup": torch_s / chunk_s,
            "chunk_vs_plain": jax_s / chunk_s,
            "jax_chunk_mfu": flops / chunk_s / peak_flops,
            "jax_chunk_compile_s": chunk_compile_s,
            "first_loss_jax_chunk": chunk_loss0,
            "jax_chunk_peak_mem_MiB": chunk_mem / 2**20,
        }
    if bf16_run is not None:
        bf16_s = float(np.median(bt))
        extra.update(
            {
                "jax_bf16_step_s": bf16_s,
                "jax_bf16_tok_s": tokens / bf16_s,
                "bf16_speedup": torch_s / bf16_s,
                "bf16_vs_plain": jax_s / bf16_s,
                "jax_bf16_mfu_vs_fp32_peak": flops / bf16_s / peak_flops,
                "first_loss_jax_bf16": bf16_loss0,
                "jax_bf16_peak_mem_MiB": bf16_mem / 2**20,
            }
        )
    return {
        "config": name,
        "params_M": n_params / 1e6,
        "batch": batch["input_ids"].shape[0],
        "seq": batch["input_ids"].shape[1],
        "jax_step_s": jax_s,
        "torch_step_s": torch_s,
        "jax_tok_s": tokens / jax_s,
        "torch_tok_s": tokens / torch_s,
        "speedup": torch_s / jax_s,
        "model_tflop_per_step": flops / 1e12,
        "jax_mfu": flops / jax_s / peak_flops,
        "torch_mfu": flops / torch_s / peak_flops,
        "jax_compile_s": compile_s,
        "first_loss_jax": jax_loss0,
        "first_loss_torch": torch_loss0,
        "jax_peak_mem_MiB": jax_mem / 2**20,
        "jax_times_s": every["jax"],
        "torch_times_s": every["torch"],
        "jax_page_faults_per_step": kernel["jax"].faults_per_step,
        "torch_page_faults_per_step": kernel["torch"].faults_per_step,
        "jax_system_s_per_step": kernel["jax"].system_s_per_step,
        "torch_system_s_per_step": kernel["torch"].system_s_per_step,
        "jax_spread": spreads["jax"],
        "torch_spread": spreads["torch"],
        "machine": quiet,
        "valid": not why,
        "invalid_because": why,
        **extra,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--configs", default="tiny,small,medium")
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--loss-chunk", type=int, default=0)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--out", default="bench_results/train_step.json")
    args = p.parse_args(argv)
    import torch

    from tools.bench.matmul_peak import measure_matmul_peak, measure_torch_matmul_peak

    torch.set_num_threads(max(1, torch.get_num_threads()))
    # The MFU denominator: the faster of the two frameworks' own 2048^3 fp32 matmuls, measured now.
    peaks = {
        "jax": measure_matmul_peak(2048, "float32"),
        "torch": measure_torch_matmul_peak(2048),
    }
    peak = max(peaks.values())
    theory = theoretical_fp32_peak()
    rows = [
        bench_config(n, args.iters, peak, args.loss_chunk, args.bf16)
        for n in args.configs.split(",")
    ]
    print(
        f"fp32 matmul 2048: JAX {peaks['jax'] / 1e9:.1f}, PyTorch {peaks['torch'] / 1e9:.1f} "
        f"GFLOP/s (MFU against {peak / 1e9:.1f}); nominal peak {theory.get('flops', 0) / 1e9:.1f} "
        f"GFLOP/s ({theory.get('basis', 'unknown')})"
    )
    for r in rows:
        if not r["valid"]:
            print(f"INVALID {r['config']}: " + "; ".join(r["invalid_because"]))
    print_table(
        rows,
        [
            "config",
            "valid",
            "params_M",
            "batch",
            "seq",
            "jax_tok_s",
            "torch_tok_s",
            "speedup",
            "jax_mfu",
            "torch_mfu",
            "jax_spread",
            "torch_spread",
            "jax_compile_s",
            "first_loss_jax",
            "first_loss_torch",
            "jax_peak_mem_MiB",
        ]
        + (
            [
                "jax_chunk_tok_s",
                "chunk_speedup",
                "chunk_vs_plain",
                "jax_chunk_mfu",
                "first_loss_jax_chunk",
                "jax_chunk_peak_mem_MiB",
            ]
            if args.loss_chunk > 0
            else []
        )
        + (
            [
                "jax_bf16_tok_s",
                "bf16_speedup",
                "bf16_vs_plain",
                "first_loss_jax_bf16",
                "jax_bf16_peak_mem_MiB",
            ]
            if args.bf16
            else []
        ),
    )
    payload = {
        "peak_fp32_flops": peak,
        "matmul_2048_flops": peaks,
        "nominal_fp32_peak": theory,
        "rows": rows,
        "argv": argv,
    }
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
