"""Data pipeline throughput on the built-in suite: samples/s against a tiny model's train step.

  python tools/bench_data.py --num_batches 30 --batch 16 --out bench_data.json [--train_step]

Measures (on this machine, numbers in a table and a JSON file):
  - built-in generation: records/s of jaxlvlm.data.builtin.make_records over all families;
  - pipeline: samples/s of make_train_iterator (host batches: generate on access, decode, resize,
    normalise, tokenise with the chat template, pad), for a few Grain read-thread settings;
  - with --train_step: samples/s a jitted forward+backward of a small LVLM consumes on the same
    batches (the rate the pipeline must keep up with).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from jaxlvlm.data.builtin import list_families, make_records  # noqa: E402
from jaxlvlm.data.pipeline import DataConfig, ImageConfig, make_train_iterator  # noqa: E402
from jaxlvlm.data.tokenizer import load_tokenizer  # noqa: E402


def bench_generation(num: int, image_size: int) -> dict:
    families = list_families()
    per = max(1, num // len(families))
    start = time.perf_counter()
    for family in families:
        make_records(family, "train", per, seed=0, image_size=image_size)
    seconds = time.perf_counter() - start
    return {
        "records": per * len(families),
        "seconds": seconds,
        "records_per_s": per * len(families) / seconds,
    }


def _data_cfg(batch: int, image_size: int, read_threads: int, num: int) -> DataConfig:
    return DataConfig(
        sources=tuple(
            {"type": "builtin", "family": f, "split": "train", "num": num, "image_size": image_size}
            for f in list_families()
        ),
        global_batch_size=batch,
        buckets=(64, 128),
        max_images=2,
        read_threads=read_threads,
        prefetch=4 * batch if read_threads else 0,
    )


def bench_pipeline(tokenizer, image_cfg, batch, num_batches, read_threads) -> dict:
    it = make_train_iterator(
        _data_cfg(batch, image_cfg.image_size, read_threads, 1000), tokenizer, image_cfg, None, 0
    )
    next(it)  # warm-up: thread start, first prefetch
    start = time.perf_counter()
    for _ in range(num_batches):
        next(it)
    seconds = time.perf_counter() - start
    return {
        "read_threads": read_threads,
        "samples": batch * num_batches,
        "seconds": seconds,
        "samples_per_s": batch * num_batches / seconds,
    }


def bench_train_step(tokenizer, image_cfg, batch, num_batches) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    from jaxlvlm.models import build_model
    from jaxlvlm.models.config import LVLMConfig, TextConfig, VisionConfig

    config = LVLMConfig(
        vision=VisionConfig(
            style=image_cfg.style,
            image_size=image_cfg.image_size,
            patch_size=8,
            hidden_size=64,
            intermediate_size=128,
            num_layers=2,
            num_heads=4,
        ),
        text=TextConfig(
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
        ),
        image_token_id=image_cfg.image_token_id,
        vision_feature_select_strategy="full" if image_cfg.style == "siglip" else "default",
    )
    if config.image_tokens_per_image != image_cfg.image_tokens_per_image:
        image_cfg = ImageConfig(
            image_cfg.image_size,
            config.image_tokens_per_image,
            image_cfg.image_token_id,
            image_cfg.style,
        )
    model = build_model(config)
    it = make_train_iterator(
        _data_cfg(batch, image_cfg.image_size, 1, 1000), tokenizer, image_cfg, None, 0
    )
    batches = [next(it) for _ in range(num_batches)]
    first = batches[0]
    params = model.init(
        jax.random.key(0),
        first["input_ids"],
        first["attention_mask"],
        first["pixel_values"],
        first["num_images"],
    )["params"]

    def loss_fn(p, b):
        logits = model.apply(
            {"params": p}, b["input_ids"], b["attention_mask"], b["pixel_values"], b["num_images"]
        )
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, b["targets"])
        return (nll * b["loss_mask"]).sum() / jnp.maximum(b["loss_mask"].sum(), 1.0)

    grad = jax.jit(jax.value_and_grad(loss_fn))
    for b in batches:  # compile every bucket first
        jax.block_until_ready(grad(params, b))
    start = time.perf_counter()
    for b in batches:
        jax.block_until_ready(grad(params, b))
    seconds = time.perf_counter() - start
    return {
        "samples": batch * num_batches,
        "seconds": seconds,
        "samples_per_s": batch * num_batches / seconds,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--num_batches", type=int, default=30)
    parser.add_argument(
        "--generate", type=int, default=2000, help="records for the generation benchmark"
    )
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--read_threads", default="0,1,2")
    parser.add_argument("--train_step", action="store_true")
    parser.add_argument("--out", default="bench_data.json")
    args = parser.parse_args(argv)

    tokenizer = load_tokenizer("builtin")
    image_cfg = ImageConfig(
        args.image_size,
        (args.image_size // 8) ** 2,
        tokenizer.convert_tokens_to_ids("<image>"),
        "clip",
    )
    results = {"generation": bench_generation(args.generate, args.image_size), "pipeline": []}
    for threads in [int(t) for t in args.read_threads.split(",")]:
        results["pipeline"].append(
            bench_pipeline(tokenizer, image_cfg, args.batch, args.num_batches, threads)
        )
    if args.train_step:
        results["train_step"] = bench_train_step(tokenizer, image_cfg, args.batch, args.num_batches)

    rows = [("built-in generation", results["generation"]["records_per_s"], "records/s")]
    rows += [
        (f"pipeline, read_threads={r['read_threads']}", r["samples_per_s"], "samples/s")
        for r in results["pipeline"]
    ]
    if "train_step" in results:
        rows.append(
            ("train step (fwd+bwd, tiny LVLM)", results["train_step"]["samples_per_s"], "samples/s")
        )
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'rate':>10}  unit")
    for name, rate, unit in rows:
        print(f"{name:<{width}}  {rate:>10.1f}  {unit}")
    results["best_pipeline_samples_per_s"] = float(
        np.max([r["samples_per_s"] for r in results["pipeline"]])
    )
    Path(args.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
