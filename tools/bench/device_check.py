"""The GPU device check: train step of a ~1B LVLM in bf16 with cuDNN attention, and generation's
decode step, measured on this machine's first accelerator.

    bash tools/bench/device_check.sh                  # ~1.2B LVLM on the GPU (< 8 minutes)
    DEVICE_CHECK_SIZE=tiny bash tools/bench/device_check.sh   # the same path, tiny, on CPU

Model (size 'gpu'): CLIP ViT-B/16 at 224 px (196 image tokens) -> MLP connector -> a TinyLlama-1.1B
shaped decoder (22 layers, width 2048, GQA 32/4 heads, vocab 32000), bf16 compute over fp32 master
weights, layers scanned, full remat, sequences of 1024 tokens. The batch is the largest of a few
candidates whose compiled step (XLA's memory analysis, nothing allocated) needs under 85% of the
device's memory. Prints and writes JSON (bench_results/device_check.json): step time (median of
the timed steps), tokens/s, MFU against the device's bf16 peak (project FLOP count,
jaxlvlm/train/flops.py), the decode step's time per token and the compiled step's memory.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import jax
import numpy as np

from configs.common import base_config
from jaxlvlm import sharding as shd
from jaxlvlm.eval.generate import greedy_generate
from jaxlvlm.models.config import lvlm_config_from_dict
from jaxlvlm.train import setup as S
from tools.aot.abstract import BatchShape
from tools.aot.analysis import memory_report
from tools.aot.context import AotContext
from tools.aot.programs import lower_train_step, train_step_flops

# Dense bf16 peak per device (tensor cores, no sparsity): NVIDIA H100 / H200 SXM datasheets give
# 989 TFLOPS (1979 "with sparsity"); A100 312 TFLOPS. The CPU figure is the measured bf16 matmul
# rate of the 2-core development machine (docs/ENVIRONMENT.md): the tiny run only checks the path.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "cpu": 390e9}

SIZES = {
    "gpu": dict(
        vision=dict(
            style="clip",
            image_size=224,
            patch_size=16,
            hidden_size=768,
            intermediate_size=3072,
            num_layers=12,
            num_heads=12,
        ),
        text=dict(
            arch="llama",
            vocab_size=32000,
            hidden_size=2048,
            intermediate_size=5632,
            num_layers=22,
            num_heads=32,
            num_kv_heads=4,
            max_position_embeddings=2048,
        ),
        length=1024,
        batches=(64, 48, 32, 16, 8),
        steps=10,
        new_tokens=65,
    ),
    # The schema's default small LVLM (jaxlvlm.train.config_schema.base_config).
    "tiny": dict(
        vision=dict(base_config().model.vision),
        text=dict(base_config().model.text, vocab_size=512),
        length=64,
        batches=(8, 4),
        steps=3,
        new_tokens=9,
    ),
}


def peak_flops(device) -> float:
    kind = getattr(device, "device_kind", "") or ""
    if device.platform == "cpu":
        return PEAK_BF16["cpu"]
    for name, peak in PEAK_BF16.items():
        if name in kind:
            return peak
    raise ValueError(f"no bf16 peak known for device {kind!r}; add it to PEAK_BF16 ({__file__})")


def make_config(size: dict, backend: str):
    c = base_config()
    c.model.vision = size["vision"]
    c.model.text = size["text"]
    c.model.image_token_id = 3
    c.runtime.param_dtype = "float32"
    c.runtime.compute_dtype = "bfloat16"
    c.runtime.scan_layers = True
    c.runtime.remat_vision = "full"
    c.runtime.remat_text = "full"
    c.runtime.attention_backend = backend
    c.mesh.shape = (1, 1, 1)
    c.data.buckets = (size["length"],)
    c.data.max_images = 1
    c.train.loss_chunk = 256
    c.train.steps = 1000
    return c


def random_batch(cfg, rows: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Right-padded rows (lengths 3/4 to all of ``length``), one image each, its tokens first."""
    rng = np.random.default_rng(seed)
    n_img = cfg.image_tokens_per_image
    ids = rng.integers(4, cfg.text.vocab_size, (rows, length)).astype(np.int32)
    ids[:, 1 : 1 + n_img] = cfg.image_token_id
    lens = rng.integers(3 * length // 4, length + 1, rows)
    mask = (np.arange(length)[None] < lens[:, None]).astype(np.int32)
    targets = np.zeros_like(ids)
    targets[:, :-1] = ids[:, 1:]
    size = cfg.vision.image_size
    return {
        "input_ids": ids * mask,
        "attention_mask": mask,
        "targets": targets * mask,
        "loss_mask": (mask * (np.arange(length)[None] > n_img)).astype(np.float32),
        "pixel_values": rng.standard_normal((rows, 1, size, size, 3)).astype(np.float32),
        "num_images": np.ones((rows,), np.int32),
        "task_ids": np.zeros((rows,), np.int32),
        "sample_index": np.arange(rows, dtype=np.int32),
    }


def pick_batch(config, cfg, model, mesh, rules, size: dict, limit: float) -> tuple[int, dict]:
    """Largest candidate batch whose compiled step needs under 85% of ``limit`` bytes."""
    for rows in size["batches"]:
        ctx = AotContext(config, None, cfg, model, mesh, rules, BatchShape(rows, size["length"], 1))
        mem = memory_report(lower_train_step(ctx).lowered.compile(), limit)
        print(f"batch {rows}: compiled step needs {mem['total_bytes'] / 2**30:.1f} GiB", flush=True)
        if mem["total_bytes"] < 0.85 * limit:
            return rows, mem
    raise RuntimeError(f"no batch in {size['batches']} fits 85% of {limit / 2**30:.1f} GiB")


def main(argv: list[str] | None = None) -> None:
    del argv
    size_name = os.environ.get("DEVICE_CHECK_SIZE", "gpu")
    if size_name not in SIZES:
        raise ValueError(f"DEVICE_CHECK_SIZE={size_name!r}: choose one of {sorted(SIZES)}")
    size = SIZES[size_name]
    device = jax.devices()[0]
    # cuDNN fused attention on the GPU; on CPU the same jax.nn.dot_product_attention call runs XLA.
    backend = "cudnn" if device.platform == "gpu" else "xla"
    config = make_config(size, backend)
    cfg = lvlm_config_from_dict(config.model.to_dict())
    model = S.build(cfg, S.runtime_from(config))
    mesh = shd.make_mesh((1, 1, 1), [device])
    rules = shd.DEFAULT_RULES
    stats = device.memory_stats() or {}
    limit = float(stats.get("bytes_limit", 16 * 2**30))
    rows, mem = pick_batch(config, cfg, model, mesh, rules, size, limit)
    config.data.global_batch_size = rows

    setup = S.plan_train_state(model, cfg, config, mesh, rules)
    state = setup.create()
    step = S.jit_train_step(model, setup, config, mesh, rules, num_tasks=1)
    batch = jax.device_put(random_batch(cfg, rows, size["length"]))
    t0 = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics["loss"])
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(size["steps"]):
        t0 = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics["loss"])
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    ctx = AotContext(config, None, cfg, model, mesh, rules, BatchShape(rows, size["length"], 1))
    flops = train_step_flops(ctx)
    tokens = rows * size["length"]

    prompts = {
        k: batch[k][:8] for k in ("input_ids", "attention_mask", "pixel_values", "num_images")
    }
    prompts["attention_mask"] = prompts["attention_mask"].at[:, size["length"] // 2 :].set(0)

    def generate(n):
        return jax.block_until_ready(
            greedy_generate(model, state.params, prompts, n, eos_id=-1, pad_id=0)
        )

    new = size["new_tokens"]
    generate(1), generate(new)  # compile both
    t0 = time.perf_counter()
    generate(1)
    t1 = time.perf_counter()
    generate(new)
    t2 = time.perf_counter()
    decode_s = max((t2 - t1) - (t1 - t0), 0.0) / (new - 1)
    peak = peak_flops(device)
    result = {
        "device": getattr(device, "device_kind", device.platform),
        "size": size_name,
        "attention_backend": backend,
        "batch": rows,
        "length": size["length"],
        "compile_s": round(compile_s, 1),
        "step_s_median": step_s,
        "step_s_all": times,
        "tokens_per_s": tokens / step_s,
        "model_flops_per_step": flops,
        "peak_bf16_flops": peak,
        "mfu": flops / step_s / peak,
        "step_memory_gib": mem["total_bytes"] / 2**30,
        "device_memory_gib": limit / 2**30,
        "decode_batch": 8,
        "decode_step_ms": decode_s * 1e3,
        "final_loss": float(metrics["loss"]),
        "jax": jax.__version__,
    }
    print(json.dumps(result, indent=1))
    print(
        f"train step {step_s * 1e3:.1f} ms at batch {rows} x {size['length']}: "
        f"{result['tokens_per_s']:.0f} tokens/s, MFU {100 * result['mfu']:.1f}% of "
        f"{peak / 1e12:.3g} TFLOP/s bf16; decode step {result['decode_step_ms']:.2f} ms (batch 8)"
    )
    out = os.environ.get("DEVICE_CHECK_OUT", os.path.join("bench_results", "device_check.json"))
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
