"""Figure 3: greedy generation with a KV cache, jaxlvlm vs transformers' generate, same LLaVA weights.

Both decode ``--new-tokens`` tokens greedily for the same batch of image + text prompts (no early stop:
the eos id is set out of vocabulary range on both sides so every row runs to the end, which keeps the
work equal). Reports new tokens/s (batch * new tokens / wall time, prefill included) and the ratio,
and checks that both sides produce the same tokens. Each side is also timed generating a single
token (prompt processing alone), which splits its time into prefill and per-step decode
(``*_prefill_ms``, ``*_decode_step_ms`` = (full - single) / (new tokens - 1)).

python -m tools.bench generation --configs tiny,small [--new-tokens 32] [--prompt-len 96]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from tools.bench.common import BENCH_CONFIGS, print_table, time_fn, write_json
from tools.bench.hf_reference import build_torch_llava, make_inputs, save_torch_llava


def bench_config(name: str, new_tokens: int, prompt_len: int, iters: int) -> dict:
    import jax
    import torch

    from jaxlvlm.convert import load_pretrained
    from jaxlvlm.eval.generate import greedy_generate
    from jaxlvlm.models import build_model

    cfg_dict = dict(BENCH_CONFIGS[name])
    cfg_dict["seq"] = max(
        prompt_len, (cfg_dict["vision"]["image"] // cfg_dict["vision"]["patch"]) ** 2 + 8
    )
    torch_model = build_torch_llava(cfg_dict)
    inputs = make_inputs(cfg_dict, seed=1)
    b, length = inputs["input_ids"].shape
    with tempfile.TemporaryDirectory() as d:
        save_torch_llava(torch_model, d)
        cfg, params = load_pretrained(d)
    model = build_model(cfg)
    params = jax.device_put(params)
    no_eos = cfg.text.vocab_size + 10
    batch = {
        "input_ids": inputs["input_ids"].astype(np.int32),
        "attention_mask": inputs["attention_mask"].astype(np.int32),
        "pixel_values": np.transpose(inputs["pixel_values_nchw"], (0, 2, 3, 1))[:, None],
        "num_images": np.ones((b,), np.int32),
    }

    def jax_run(n=new_tokens):
        return np.asarray(
            jax.block_until_ready(greedy_generate(model, params, batch, n, no_eos, 0))
        )

    t_in = {
        "input_ids": torch.from_numpy(inputs["input_ids"]),
        "attention_mask": torch.from_numpy(inputs["attention_mask"]),
        "pixel_values": torch.from_numpy(inputs["pixel_values_nchw"]),
    }

    def torch_run(n=new_tokens):
        with torch.no_grad():
            out = torch_model.generate(
                **t_in,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )
        return out[:, length:].numpy()

    jax_tokens = jax_run()
    torch_tokens = torch_run()
    same = float(np.mean(jax_tokens == torch_tokens))
    jt, tt, jp, tp = [], [], [], []
    reps = max(1, iters // 2)
    for _ in range(2):
        jt.append(time_fn(jax_run, warmup=1, iters=reps)["median_s"])
        tt.append(time_fn(torch_run, warmup=1, iters=reps)["median_s"])
        jp.append(time_fn(lambda: jax_run(1), warmup=1, iters=reps)["median_s"])
        tp.append(time_fn(lambda: torch_run(1), warmup=1, iters=reps)["median_s"])
    jax_s, torch_s = float(np.median(jt)), float(np.median(tt))
    jax_p, torch_p = float(np.median(jp)), float(np.median(tp))
    n = b * new_tokens
    steps = max(new_tokens - 1, 1)
    return {
        "config": name,
        "batch": b,
        "prompt_len": length,
        "new_tokens": new_tokens,
        "jax_tok_s": n / jax_s,
        "torch_tok_s": n / torch_s,
        "speedup": torch_s / jax_s,
        "same_tokens_frac": same,
        "jax_prefill_ms": jax_p * 1e3,
        "torch_prefill_ms": torch_p * 1e3,
        "jax_decode_step_ms": (jax_s - jax_p) / steps * 1e3,
        "torch_decode_step_ms": (torch_s - torch_p) / steps * 1e3,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--configs", default="tiny,small")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--prompt-len", type=int, default=96)
    p.add_argument("--iters", type=int, default=4)
    p.add_argument("--out", default="bench_results/generation.json")
    args = p.parse_args(argv)
    rows = [
        bench_config(n, args.new_tokens, args.prompt_len, args.iters)
        for n in args.configs.split(",")
    ]
    print_table(
        rows,
        [
            "config",
            "batch",
            "prompt_len",
            "new_tokens",
            "jax_tok_s",
            "torch_tok_s",
            "speedup",
            "same_tokens_frac",
            "jax_prefill_ms",
            "torch_prefill_ms",
            "jax_decode_step_ms",
            "torch_decode_step_ms",
        ],
    )
    payload = {"rows": rows, "argv": argv}
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
