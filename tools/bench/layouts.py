"""How the decoder's matmuls are laid out for XLA's CPU backend: each layout jaxlvlm uses against the
one it replaced, forward and backward, side by side in one process.

python -m tools.bench layouts [--config small] [--rounds 5] [--out bench_results/layouts.json]
python -m tools.bench layouts --render bench_results/layouts.json [--write]   (BENCHMARKS block)

Pairs (the 'small' bench config's shapes by default, float32):
  mlp        jaxlvlm's GatedMLP (every Projection one [tokens, d_in] x [d_in, d_out] matmul) against
             the same SwiGLU with the batch dims kept in the dot ([B, L, C] x [C, F]).
  lm_head    the LM head's Projection plus the token NLL against the same with [B, L, C] x [C, V].
  attention  jaxlvlm's attend ('xla': batched matmuls over (B, kv head)) against the grouped einsum
             'bqkgd,btkd->bkgqt' it replaced, causal with right padding.
Rounds interleave the pairs' members, so machine noise hits both alike; each member reports the
median of its per-round medians with the range, and each pair the ratio and the largest difference
of the gradients (the layouts must agree to float tolerance). Other processes' CPU share and the
load average before and after are recorded; a run with others' share above the tool's limit is
marked invalid.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from tools.bench.common import BENCH_CONFIGS, ROOT, machine_info, print_table, write_json
from tools.bench.quiet import OthersMonitor, validity
from tools.method_bench.readme_blocks import write_block

TOOL = "python -m tools.bench layouts --render"

_MASKED = -1e30


def _einsum_attention(q, k, v, key_mask, causal):
    """The grouped einsum attention jaxlvlm used before (the reference of the 'attention' pair)."""
    b, lq, h, d = q.shape
    lk, kv = k.shape[1], k.shape[2]
    qg = q.reshape(b, lq, kv, h // kv, d)
    scores = jnp.einsum("bqkgd,btkd->bkgqt", qg, k, preferred_element_type=jnp.float32)
    scores = scores * (d**-0.5)
    mask = key_mask.astype(bool)[:, None, None, None, :]
    if causal:
        mask = mask & jnp.tril(jnp.ones((lq, lk), dtype=bool))[None, None, None]
    probs = jax.nn.softmax(jnp.where(mask, scores, _MASKED), axis=-1).astype(v.dtype)
    return jnp.einsum("bkgqt,btkd->bqkgd", probs, v).reshape(b, lq, h, d)


def _batched_dot(x, w):
    """x [..., d_in] . w [d_in, d_out] with x's batch dims kept in the dot (the old Projection)."""
    return jax.lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))


def pairs(cfg: dict) -> dict[str, dict]:
    """{pair: {'args', 'members': {name: loss(*args) -> scalar}}} at ``cfg``'s shapes."""
    from jaxlvlm.models.attention import attend
    from jaxlvlm.models.config import RuntimeConfig, TextConfig
    from jaxlvlm.models.mlp import GatedMLP
    from jaxlvlm.models.projection import Projection
    from jaxlvlm.train.losses import token_nll

    t = cfg["text"]
    b, seq, c, f, v = cfg["batch"], cfg["seq"], t["hidden"], t["inter"], t["vocab"]
    h, kv = t["heads"], t["kv_heads"]
    d = c // h
    keys = iter(jax.random.split(jax.random.PRNGKey(0), 16))
    x = jax.random.normal(next(keys), (b, seq, c))
    ct = jax.random.normal(next(keys), (b, seq, c))

    mlp = GatedMLP(TextConfig(hidden_size=c, intermediate_size=f), RuntimeConfig())
    mp = nn.meta.unbox(mlp.init(next(keys), x, {}))

    def mlp_ours(p, x):
        return jnp.vdot(mlp.apply(p, x, {}), ct)

    def mlp_kept(p, x):
        w = {n: p["params"][n]["kernel"] for n in ("gate_proj", "up_proj", "down_proj")}
        hid = jax.nn.silu(_batched_dot(x, w["gate_proj"])) * _batched_dot(x, w["up_proj"])
        return jnp.vdot(_batched_dot(hid, w["down_proj"]), ct)

    head = Projection((c,), (v,), ("embed",), ("vocab",), float32_output=True)
    hp = nn.meta.unbox(head.init(next(keys), x))
    targets = jax.random.randint(next(keys), (b, seq), 0, v)

    def head_ours(p, x):
        return jnp.mean(token_nll(head.apply(p, x), targets))

    def head_kept(p, x):
        return jnp.mean(token_nll(_batched_dot(x, p["params"]["kernel"]), targets))

    q = jax.random.normal(next(keys), (b, seq, h, d))
    k = jax.random.normal(next(keys), (b, seq, kv, d))
    vv = jax.random.normal(next(keys), (b, seq, kv, d))
    key_mask = jnp.arange(seq)[None] < jnp.maximum(seq - 3 * jnp.arange(b)[:, None], 1)
    act = jax.random.normal(next(keys), q.shape)

    def attn_ours(q, k, v):
        return jnp.vdot(attend(q, k, v, key_mask, causal=True), act)

    def attn_einsum(q, k, v):
        return jnp.vdot(_einsum_attention(q, k, v, key_mask, True), act)

    return {
        "mlp": {"args": (mp, x), "members": {"jaxlvlm": mlp_ours, "batch dims kept": mlp_kept}},
        "lm_head": {
            "args": (hp, x),
            "members": {"jaxlvlm": head_ours, "batch dims kept": head_kept},
        },
        "attention": {
            "args": (q, k, vv),
            "members": {"jaxlvlm": attn_ours, "grouped einsum": attn_einsum},
        },
    }


def _compiled(loss: Callable, args) -> Callable:
    argnums = tuple(range(len(args)))
    return jax.jit(jax.value_and_grad(loss, argnums=argnums)).lower(*args).compile()


def _once(fn, args) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def _max_grad_diff(a, b) -> float:
    la, lb = jax.tree_util.tree_leaves(a[1]), jax.tree_util.tree_leaves(b[1])
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(la, lb, strict=True))


def run(cfg: dict, rounds: int, iters: int) -> tuple[list[dict], dict]:
    built = pairs(cfg)
    compiled = {p: {n: _compiled(f, v["args"]) for n, f in v["members"].items()}
                for p, v in built.items()}  # fmt: skip
    times: dict[tuple[str, str], list[float]] = {}
    spreads: dict[str, float] = {}
    with OthersMonitor() as monitor:
        for _ in range(rounds):
            for p, members in compiled.items():
                for n, fn in members.items():
                    _once(fn, built[p]["args"])  # warm
                    ts = [_once(fn, built[p]["args"]) for _ in range(iters)]
                    times.setdefault((p, n), []).append(float(np.median(ts)))
    rows = []
    for p, members in compiled.items():
        outs = {n: fn(*built[p]["args"]) for n, fn in members.items()}
        ours, ref = list(members)
        med = {n: float(np.median(times[(p, n)])) for n in members}
        for n in members:
            ts = times[(p, n)]
            spreads[f"{p}/{n}"] = (max(ts) - min(ts)) / med[n]
            rows.append({
                "pair": p,
                "layout": n,
                "ms": 1e3 * med[n],
                "range_ms": f"{1e3 * min(ts):.1f}-{1e3 * max(ts):.1f}",
                "vs_replaced": med[ref] / med[n],
                "max_grad_diff": _max_grad_diff(outs[n], outs[ours]),
            })  # fmt: skip
    quiet = monitor.result()
    return rows, {**quiet, "invalid": validity(quiet, spreads), "spreads": spreads}


def table(payload: dict) -> list[str]:
    """The BENCHMARKS block of one run's JSON: a row per layout, then the run's validity."""
    q = payload["quiet"]
    lines = [
        f"`{payload['config']}`, {payload['rounds']} rounds of {payload['iters']} timed calls, "
        f"load average {q['load_before'][0]:.1f} before and {q['load_after'][0]:.1f} after, other "
        f"processes {q['others_share']:.1%} of the CPU ({payload['time']}):",
        "",
        "| pair | layout | ms (forward + backward) | range over rounds | speed vs the replaced "
        "layout | largest gradient difference from jaxlvlm's |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in payload["rows"]:
        lines.append(
            f"| {r['pair']} | {r['layout']} | {r['ms']:.1f} | {r['range_ms']} | "
            f"{r['vs_replaced']:.2f}x | {r['max_grad_diff']:.1e} |"
        )
    lines.append("")
    if q["invalid"]:
        lines.append("Marked invalid by the tool: " + "; ".join(q["invalid"]) + ".")
    else:
        lines.append("Valid by the tool's rules (quiet machine, round-to-round spread within 20%).")
    return lines


def render(path: str, write: bool, file: str) -> None:
    with open(path) as f:
        lines = table(json.load(f))
    print("\n".join(lines))
    if write:
        write_block(file, "layouts", lines, tool=TOOL)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default="small", choices=sorted(BENCH_CONFIGS))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--out", default="bench_results/layouts.json")
    p.add_argument("--render", default="", help="print (and --write) the block of a run's JSON")
    p.add_argument("--write", action="store_true", help="with --render: replace BENCHMARKS' block")
    p.add_argument("--file", default=os.path.join(ROOT, "BENCHMARKS.md"))
    a = p.parse_args(argv)
    if a.render:
        render(a.render, a.write, a.file)
        return {}
    rows, quiet = run(BENCH_CONFIGS[a.config], a.rounds, a.iters)
    print_table(rows, ["pair", "layout", "ms", "range_ms", "vs_replaced", "max_grad_diff"])
    if quiet["invalid"]:
        print("INVALID:", "; ".join(quiet["invalid"]))
    payload = {"config": a.config, "rounds": a.rounds, "iters": a.iters, "rows": rows,
               "quiet": quiet, "machine": machine_info(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
               "argv": argv if argv is not None else sys.argv[1:]}  # fmt: skip
    write_json(a.out, payload)
    return payload


if __name__ == "__main__":
    main()
