"""Figures 1 and 2: train step (forward + backward + AdamW) of the same LLaVA, jaxlvlm vs PyTorch.

Both sides run the same weights (a transformers LlavaForConditionalGeneration with random weights,
saved as safetensors and loaded by jaxlvlm's ``load_pretrained``), the same batch, float32, AdamW with
global-norm clipping. Reports tokens/s of each, their ratio, and jaxlvlm's model FLOPs utilisation
against this machine's measured fp32 matmul peak (measured in the same run).

python -m tools.bench train_step --configs tiny,small,medium [--iters 5] [--loss-chunk 64]
    [--rounds 2] [--torch-process own|shared] [--torch-kept-memory]
    [--out bench_results/train_step.json]

PyTorch runs in its own worker process by default (tools/bench/torch_worker.py), timed in blocks
interleaved with jaxlvlm's, so each framework has its own process and allocator as its users run
it. --torch-process shared runs it in this process instead (how runs before 2026-12-07 18:40 UTC
were taken: PyTorch then shared jaxlvlm's allocator arena and host-memory setting).
--torch-kept-memory adds a side: PyTorch in a second worker with jaxlvlm's host-memory setting
(jaxlvlm/host_memory.py) applied, reported as torch_kept_* columns and speedup_vs_torch_kept.
--rounds R (default 2) times R rounds of one block per side; every run records the paired ratio
(geometric mean over rounds of PyTorch's block median over jaxlvlm's) with its 95% bootstrap
interval over the rounds and the rounds jaxlvlm won, against each PyTorch side.

--loss-chunk N > 0 adds a third side, jaxlvlm with config.train.loss_chunk=N (chunked LM head +
cross-entropy), timed interleaved with the other two and reported as jax_chunk_* columns, with the
XLA peak memory of both jaxlvlm steps (compiled.memory_analysis(), exact, unaffected by load).
--bf16 adds a side with RuntimeConfig.compute_dtype='bfloat16' (fp32 master weights and optimizer
state, bf16 matmuls with fp32 accumulation, fp32 logits), reported as jax_bf16_* columns; its MFU
is against the same fp32 peak (the bf16 matmul peak here is about 1.8x that).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile

import numpy as np

from tools.bench.common import BENCH_CONFIGS, print_table, time_fn, write_json
from tools.bench.hf_reference import make_inputs
from tools.bench.kernel_cost import KernelCost
from tools.bench.quiet import (
    OthersMonitor,
    machine_load_reasons,
    spread,
    theoretical_fp32_peak,
    validity,
)
from tools.bench.step_ab import paired_speedup
from tools.bench.torch_worker import TorchSide, TorchWorker

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
    name: str,
    iters: int,
    peak_flops: float,
    torch_sides: dict,
    loss_chunk: int = 0,
    bf16: bool = False,
    rounds: int = 2,
) -> dict:
    """One config, every side timed interleaved: ``rounds`` rounds, each one block per side
    (jaxlvlm, then each PyTorch side in ``torch_sides``: {'torch': side, optionally 'torch_kept':
    side}, each a TorchWorker or a TorchSide, tools/bench/torch_worker.py) of one warm-up step and
    max(1, iters // rounds) timed steps. 'torch' builds and saves the model jaxlvlm loads."""
    from jaxlvlm.train.flops import train_step_flops

    cfg_dict = BENCH_CONFIGS[name]
    inputs = make_inputs(cfg_dict)
    batch = jax_batch(inputs)
    tokens = int(np.prod(batch["input_ids"].shape))
    chunk_run = None
    with tempfile.TemporaryDirectory() as d:
        n_params = {side: s.build(name, d if side == "torch" else None)
                    for side, s in torch_sides.items()}  # fmt: skip
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
    first_loss = {side: s.prepare() for side, s in torch_sides.items()}
    # Interleave the sides so machine noise hits all alike; watch what else uses the CPU meanwhile
    # (a worker process's CPU time is the benchmark's own).
    ct, bt = [], []
    every = {"jax": [], **{side: [] for side in torch_sides}}
    block_medians = {side: [] for side in every}
    kernel = {side: KernelCost() for side in every}
    per_block = max(1, iters // rounds)
    helpers = tuple(s.pid for s in torch_sides.values() if s.pid is not None)
    with OthersMonitor(helpers=helpers) as monitor:
        for _ in range(rounds):
            with kernel["jax"].over(per_block + 1):  # the warm-up step runs inside too
                j = time_fn(jax_run, warmup=1, iters=per_block)
            every["jax"] += j["times"]
            block_medians["jax"].append(j["median_s"])
            for side, s in torch_sides.items():
                t = s.steps(warmup=1, iters=per_block)
                kernel[side].add(t["faults"], t["system_s"], t["steps"])
                every[side] += t["times"]
                block_medians[side].append(float(np.median(t["times"])))
            if chunk_run is not None:
                ct.append(time_fn(chunk_run, warmup=1, iters=per_block)["median_s"])
            if bf16_run is not None:
                bt.append(time_fn(bf16_run, warmup=1, iters=per_block)["median_s"])
    quiet = monitor.result()
    spreads = {side: spread(ts) for side, ts in every.items()}
    why = validity(quiet, spreads)
    step_s = {side: float(np.median(ts)) for side, ts in every.items()}
    jax_s, torch_s = step_s["jax"], step_s["torch"]
    flops = train_step_flops(lvlm_cfg, batch["input_ids"].shape[0], batch["input_ids"].shape[1], 1)
    extra = {}
    for side in torch_sides:
        extra.update(paired_ratio(block_medians[side], block_medians["jax"],
                                  "" if side == "torch" else f"_vs_{side}"))  # fmt: skip
    if "torch_kept" in torch_sides:
        kept_s = step_s["torch_kept"]
        extra |= {
            "torch_kept_host_memory": torch_sides["torch_kept"].host_memory,
            "torch_kept_step_s": kept_s,
            "torch_kept_tok_s": tokens / kept_s,
            "speedup_vs_torch_kept": kept_s / jax_s,
            "torch_kept_mfu": flops / kept_s / peak_flops,
            "first_loss_torch_kept": first_loss["torch_kept"],
            "torch_kept_times_s": every["torch_kept"],
            "torch_kept_page_faults_per_step": kernel["torch_kept"].faults_per_step,
            "torch_kept_system_s_per_step": kernel["torch_kept"].system_s_per_step,
            "torch_kept_spread": spreads["torch_kept"],
        }
    if chunk_run is not None:
        chunk_s = float(np.median(ct))
        extra.update(
            {
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
        )
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
        "params_M": n_params["torch"] / 1e6,
        "batch": batch["input_ids"].shape[0],
        "seq": batch["input_ids"].shape[1],
        "torch_process": "own" if torch_sides["torch"].pid is not None else "shared",
        "torch_host_memory": torch_sides["torch"].host_memory,
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
        "first_loss_torch": first_loss["torch"],
        "jax_peak_mem_MiB": jax_mem / 2**20,
        "jax_times_s": every["jax"],
        "torch_times_s": every["torch"],
        "jax_page_faults_per_step": kernel["jax"].faults_per_step,
        "torch_page_faults_per_step": kernel["torch"].faults_per_step,
        "jax_system_s_per_step": kernel["jax"].system_s_per_step,
        "torch_system_s_per_step": kernel["torch"].system_s_per_step,
        "jax_spread": spreads["jax"],
        "torch_spread": spreads["torch"],
        "rounds": rounds,
        "steps_per_block": per_block,
        "block_medians_s": block_medians,
        "machine": quiet,
        "machine_quiet": not machine_load_reasons(quiet),
        "valid": not why,
        "invalid_because": why,
        **extra,
    }


def paired_ratio(torch_medians: list[float], jax_medians: list[float], suffix: str) -> dict:
    """The paired ratio of one PyTorch side to jaxlvlm over the rounds: the geometric mean of
    PyTorch's block median over jaxlvlm's in the same round, its 95% bootstrap interval over the
    rounds (step_ab.paired_speedup), and the rounds jaxlvlm was faster in. Keys end in ``suffix``."""
    mean, low, high = paired_speedup(torch_medians, jax_medians)
    wins = sum(t > j for t, j in zip(torch_medians, jax_medians, strict=True))
    return {f"paired_speedup{suffix}": mean, f"paired_ci{suffix}": [low, high],
            f"round_wins{suffix}": int(wins)}  # fmt: skip


@contextlib.contextmanager
def torch_sides(process: str, kept_memory: bool):
    """Yields the PyTorch sides for --torch-process/--torch-kept-memory, {'torch': side,
    optionally 'torch_kept': side}, and closes them (and their worker processes) after."""
    if process == "shared" and kept_memory:
        raise SystemExit(
            "--torch-kept-memory needs --torch-process own: in a shared process PyTorch already "
            "has whatever host-memory setting jaxlvlm applied"
        )
    with contextlib.ExitStack() as stack:
        if process == "own":
            sides = {"torch": stack.enter_context(TorchWorker())}
            if kept_memory:
                sides["torch_kept"] = stack.enter_context(TorchWorker(keep_host_memory=True))
        else:
            sides = {"torch": stack.enter_context(TorchSide())}
        yield sides


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--configs", default="tiny,small,medium")
    p.add_argument("--iters", type=int, default=6)
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="rounds of interleaved blocks (each side one warm-up + iters // rounds timed steps "
        "per round); the paired ratio's interval is over the rounds",
    )
    p.add_argument("--loss-chunk", type=int, default=0)
    p.add_argument("--bf16", action="store_true")
    p.add_argument(
        "--torch-process",
        choices=("own", "shared"),
        default="own",
        help="own: PyTorch runs in its own worker process, as its users run it (default); "
        "shared: in this process, sharing its allocator and host-memory setting with jaxlvlm",
    )
    p.add_argument(
        "--torch-kept-memory",
        action="store_true",
        help="add a side: PyTorch in its own process with jaxlvlm's host-memory setting applied",
    )
    p.add_argument("--out", default="bench_results/train_step.json")
    args = p.parse_args(argv)
    from tools.bench.matmul_peak import measure_matmul_peak

    with torch_sides(args.torch_process, args.torch_kept_memory) as sides:
        # The MFU denominator: the faster of the two frameworks' own 2048^3 fp32 matmuls, now.
        peaks = {
            "jax": measure_matmul_peak(2048, "float32"),
            "torch": sides["torch"].peak(2048),
        }
        peak = max(peaks.values())
        rows = [
            bench_config(n, args.iters, peak, sides, args.loss_chunk, args.bf16, args.rounds)
            for n in args.configs.split(",")
        ]
    theory = theoretical_fp32_peak()
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
            "paired_speedup",
            "round_wins",
            "torch_process",
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
            ["torch_kept_tok_s", "speedup_vs_torch_kept", "torch_kept_spread"]
            if args.torch_kept_memory
            else []
        )
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
