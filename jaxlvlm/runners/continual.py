"""mode 'continual': an ordered stream of tasks, the accuracy matrix, forgetting metrics (METHODS 2, 5).

Each task of config.method.stream is a resumable phase (workdir/task_<t>_<name>/): train on that task's
sources for train.steps, then evaluate on every task of the stream (row t of the accuracy matrix). A
stream stopped in the middle resumes at the task and step where it stopped. Before the stream, the
base model is evaluated (b for FWT) and, if method.base_steps > 0, first trained on method.base_sources
(the shared starting point of every approach; all approaches of one config start from it).

config.method.approach:
  continual_llava  frozen LVLM + the prompt pool on o_proj (jaxlvlm/methods/prompt_pool.py): per task,
                   stage 1 aligns the selected keys (eq. 11, align_steps batches, keys only), stage 2
                   trains the pool factors and contextual weights (eq. 12); the end-of-task snapshot
                   freezes the task's contextual increment. Instruction embedding (method.embedding):
                   'minilm' = the frozen all-MiniLM-L6-v2 of the prompt text (decoded from the
                   batch), or 'token_mean' = the frozen LLM's mean input embedding of those tokens.
  seq_ft           sequential fine-tuning of connector + LLM (vision frozen)
  seq_lora         sequential LoRA (config.lora targets/rank) on the frozen LVLM
  replay           seq_ft with replay_per_task samples of every earlier task mixed in (a small buffer)
  joint            one multi-task run on all tasks for T * train.steps (the upper bound; final row only)
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlvlm.data import batch as B
from jaxlvlm.eval import continual_metrics as cm
from jaxlvlm.methods import prompt_pool as pp
from jaxlvlm.runners import _plots
from jaxlvlm.runners._instructions import (
    INSTRUCTION_EMBEDDING,
    EmbeddingIterator,
    embed_global_batch,
)
from jaxlvlm.runners._phase import run_phase, scores_vector
from jaxlvlm.runners.registry import register_runner

APPROACHES = ("continual_llava", "seq_ft", "seq_lora", "replay", "joint")

METHOD_DEFAULTS: dict[str, Any] = dict(
    approach="continual_llava",
    stream=(),  # task names in training order; () = data.tasks order
    base_steps=0,
    base_sources=(),
    base_lr=0.0,  # learning rate of the base phase; 0 = optim.lr (set it so every approach shares one base)
    pool_size=30,
    top_m=5,
    pool_rank=8,
    snapshot_entries=0,
    include_current=False,
    align_steps=20,
    key_lr=1e-3,
    embedding="minilm",  # 'minilm' (frozen all-MiniLM-L6-v2) | 'token_mean' (frozen LLM embeddings)
    replay_per_task=0,
    evaluate_base=True,
)


def method_settings(config) -> dict[str, Any]:
    """config.method over METHOD_DEFAULTS; unknown keys / values raise, naming them."""
    given = config.method.to_dict() if hasattr(config.method, "to_dict") else dict(config.method)
    unknown = sorted(set(given) - set(METHOD_DEFAULTS))
    if unknown:
        raise ValueError(
            f"config.method: unknown keys {unknown} for mode 'continual'; known: {sorted(METHOD_DEFAULTS)}"
        )
    m = {**METHOD_DEFAULTS, **given}
    if m["approach"] not in APPROACHES:
        raise ValueError(f"config.method.approach={m['approach']!r}: choose one of {APPROACHES}")
    check_base_lr(m)
    if m["embedding"] not in ("minilm", "token_mean"):
        raise ValueError(
            f"config.method.embedding={m['embedding']!r}: use 'minilm' or 'token_mean'"
        )
    if m["approach"] == "replay" and m["replay_per_task"] <= 0:
        raise ValueError(
            "approach 'replay' needs config.method.replay_per_task > 0 (buffer per task)"
        )
    return m


def stream_of(config, m) -> list[str]:
    tasks = list(config.data.tasks) or list(
        dict.fromkeys(dict(s)["task"] for s in config.data.sources)
    )
    stream = list(m["stream"]) or tasks
    unknown = [t for t in stream if t not in tasks]
    if unknown or len(set(stream)) != len(stream):
        raise ValueError(
            f"config.method.stream={stream}: tasks must be distinct names from {tasks}"
        )
    return stream


def _specs_of(config, task: str, key: str = "sources") -> list[dict]:
    specs = [dict(s) for s in getattr(config.data, key) if dict(s).get("task") == task]
    if not specs:
        raise ValueError(f"no data.{key} spec has task {task!r}; every stream task needs one")
    return specs


def _phase_config(config, sources, steps, stream, *, freeze=(), lora=None):
    c = copy.deepcopy(config)
    with c.unlocked():
        c.data.sources = tuple(sources)
        c.data.eval_sources = tuple(s for t in stream for s in _specs_of(config, t, "eval_sources"))
        c.data.tasks = tuple(stream)
        c.train.steps = int(steps)
        c.train.eval_every = 0
        c.optim.freeze = tuple(freeze)
        if lora is not None:
            c.lora.enabled = lora
        c.method = type(c.method)()
    return c


FROZEN_BASE = ("vision/.*", "connector/.*", "llm/.*")


# ----------------------------------------------------------------------------- Continual LLaVA


def pool_config(run, m, num_tasks: int) -> pp.PoolConfig:
    text = run.model_cfg.text
    hd = text.resolved_head_dim
    return pp.PoolConfig(
        pool_size=m["pool_size"],
        top_m=m["top_m"],
        rank=m["pool_rank"],
        embed_dim=384 if m["embedding"] == "minilm" else text.hidden_size,
        num_layers=text.num_layers,
        d_in=text.num_heads * hd,
        d_out=text.hidden_size,
        max_tasks=num_tasks,
        snapshot_entries=m["snapshot_entries"],
        include_current=bool(m["include_current"]),
    )


def instruction_embedding(params, batch: dict, image_token_id: int) -> jax.Array:
    """[B, d_s]: the batch's MiniLM embeddings when the runner added them, else the mean of the frozen
    LLM's input embeddings over the prompt's text tokens."""
    if INSTRUCTION_EMBEDDING in batch:
        return jnp.asarray(batch[INSTRUCTION_EMBEDDING], jnp.float32)
    table = jax.lax.stop_gradient(params["llm"]["embed_tokens"]["embedding"])
    mask = pp.instruction_token_mask(batch, image_token_id)
    return pp.mean_token_embedding(table, batch[B.INPUT_IDS], mask)


def pool_selection(params, pool, batch, pcfg: pp.PoolConfig, image_token_id: int):
    """(idx [B, M], weights [B, M]): each row's top-M pool entries (keys are constants here)."""
    e = instruction_embedding(params, batch, image_token_id)
    idx, w, _ = pp.select_pool_entries(e, jax.lax.stop_gradient(pool["keys"]), pcfg.top_m)
    return idx, w


def pool_coefficients(params, pool, batch, pcfg: pp.PoolConfig, image_token_id: int) -> jax.Array:
    """[B, N] selection coefficients of a batch (keys are constants here)."""
    idx, w = pool_selection(params, pool, batch, pcfg, image_token_id)
    return pp.selection_coefficients(idx, w, pcfg.pool_size)


def make_pool_forward(model, pcfg: pp.PoolConfig, image_token_id: int, num_active: int):
    """forward_fn(params, lora=pool, batch, method_state=memory, rng) -> logits, with the pool on o_proj
    and the snapshots of the num_active finished tasks."""

    def forward(params, pool, batch, memory, rng):
        del rng
        idx, w = pool_selection(params, pool, batch, pcfg, image_token_id)
        lowrank = pp.pool_lowrank(pool, memory, idx, w, pcfg, num_active)
        kwargs = {}
        if B.PIXEL_VALUES in batch:
            kwargs = {"pixel_values": batch[B.PIXEL_VALUES], "num_images": batch[B.NUM_IMAGES]}
        return model.apply(
            {"params": params},
            batch[B.INPUT_IDS],
            batch[B.ATTENTION_MASK],
            lowrank=lowrank,
            **kwargs,
        )

    return forward


def align_keys(run, params, pool, pcfg, m, seed: int, wrap=None) -> dict:
    """Stage 1 (eq. 11): align_steps batches of the task, Adam on the keys only; returns the pool."""
    from jaxlvlm.data.pipeline import make_train_iterator

    tid = run.model_cfg.image_token_id
    it = make_train_iterator(run.data_cfg, run.tokenizer, run.image_cfg, run.mesh, seed)
    if wrap is not None:
        it = wrap(it, run)
    tx = optax.adam(m["key_lr"])

    @jax.jit
    def step(keys, opt, params, batch):
        e = instruction_embedding(params, batch, tid)
        idx, _, _ = pp.select_pool_entries(e, keys, pcfg.top_m)
        row = (batch[B.LOSS_MASK].sum(axis=1) > 0).astype(jnp.float32)
        loss, g = jax.value_and_grad(lambda k: pp.align_loss(e, k, idx, row))(keys)
        upd, opt = tx.update(g, opt, keys)
        return optax.apply_updates(keys, upd), opt, loss

    keys = pool["keys"]
    opt = tx.init(keys)
    loss = None
    with run.mesh:
        for _ in range(m["align_steps"]):
            keys, opt, loss = step(keys, opt, params, next(it))
    if loss is not None:
        logging.info("key alignment: last loss %.4f", float(loss))
    return dict(pool, keys=keys)


# ----------------------------------------------------------------------------- the stream


@register_runner("continual")
def run_continual(config, workdir: str) -> dict:
    """Runs the stream (resuming), fills the accuracy matrix, writes report.md with metrics + heatmap."""
    m = method_settings(config)
    stream = stream_of(config, m)
    T = len(stream)
    os.makedirs(workdir, exist_ok=True)
    approach = m["approach"]
    base_params = _base_params(config, workdir, stream, m)
    b = _base_scores(config, workdir, stream, base_params, m)
    if approach == "joint":
        sources = [s for t in stream for s in _specs_of(config, t)]
        c = _phase_config(
            config, sources, config.train.steps * T, stream, freeze=("vision/.*",), lora=False
        )
        res = run_phase(
            c, os.path.join(workdir, "joint"), init_params=base_params, need_state=False
        )
        final = scores_vector(res.scores, stream)
        summary = {
            "approach": approach,
            "tasks": stream,
            "final": final.tolist(),
            "base": _list(b),
            "ACC": float(final.mean()),
            "wall_s": res.wall_s,
        }
        return {"summary": summary, "report": write_continual_report(workdir, summary)}
    a = np.full((T, T), np.nan)
    params, lora, memory = base_params, None, None
    wall = 0.0
    for t, task in enumerate(stream):
        phase_dir = os.path.join(workdir, f"task_{t}_{_safe(task)}")
        sources = _specs_of(config, task)
        if approach == "replay":
            sources += [
                dict(s, num=m["replay_per_task"]) for p in stream[:t] for s in _specs_of(config, p)
            ]
        if approach == "continual_llava":
            res, memory, lora = _pool_task(
                config, phase_dir, sources, stream, params, lora, memory, m, t
            )
        elif approach == "seq_lora":
            c = _phase_config(
                config, sources, config.train.steps, stream, freeze=FROZEN_BASE, lora=True
            )
            init = (lambda r, lo=lora: lo) if lora is not None else None
            res = run_phase(c, phase_dir, init_params=params, lora_init=init)
            lora = res.state.lora
        else:  # seq_ft, replay
            c = _phase_config(
                config, sources, config.train.steps, stream, freeze=("vision/.*",), lora=False
            )
            res = run_phase(c, phase_dir, init_params=params)
            params = res.state.params
        a[t] = scores_vector(res.scores, stream)
        wall += res.wall_s
        logging.info(
            "after task %d (%s): %s", t, task, dict(zip(stream, a[t].round(1), strict=True))
        )
    metrics = {k: float(v) for k, v in cm.continual_metrics(a, b).items()}
    summary = {
        "approach": approach,
        "tasks": stream,
        "matrix": a.tolist(),
        "base": _list(b),
        "metrics": metrics,
        "wall_s": wall,
    }
    if approach == "continual_llava":
        summary["frozen_base_unchanged"] = _same_tree(base_params, res.state.params)
    return {"summary": summary, "report": write_continual_report(workdir, summary)}


def _pool_task(config, phase_dir, sources, stream, base_params, pool, memory, m, t):
    from jaxlvlm.runners._phase import read_phase
    from jaxlvlm.train import trainer as TR

    c = _phase_config(
        config, sources, config.train.steps, stream, freeze=(*FROZEN_BASE, "lora/keys")
    )
    with c.unlocked():
        # Weight decay would shrink the pool entries a task does not select; they must stay as learned.
        c.optim.weight_decay = 0.0
    run = TR.prepare_run(c, phase_dir)
    pcfg = pool_config(run, m, len(stream))
    tid = run.model_cfg.image_token_id
    if pool is None:
        pool = pp.init_pool(jax.random.PRNGKey(config.seed + 1), pcfg)
        memory = pp.init_memory(pcfg)
    ckpt_dir = os.path.join(phase_dir, "checkpoints")
    has_ckpt = os.path.isdir(ckpt_dir) and any(d.isdigit() for d in os.listdir(ckpt_dir))
    started = read_phase(phase_dir) is not None or has_ckpt
    wrap, encoder = None, None
    if m["embedding"] == "minilm":
        encoder = _minilm()

        def wrap(it, r):
            return EmbeddingIterator(it, encoder, r.tokenizer, tid, r.mesh, jax.process_count())

    if not started:
        pool = align_keys(run, base_params, pool, pcfg, m, config.seed + 1000 + t, wrap)

    def after(state, batch, metrics):
        del metrics
        coeff = pool_coefficients(state.params, state.lora, batch, pcfg, tid)
        row = (batch[B.LOSS_MASK].sum(axis=1) > 0).astype(jnp.float32)
        return pp.accumulate_coefficients(state.method_state, coeff, row)

    def finalize(state):
        snap = jax.jit(functools.partial(pp.end_of_task_snapshot, cfg=pcfg))
        return state.replace(method_state=snap(state.lora, state.method_state))

    def lowrank_fn(state, batch):
        if encoder is not None:
            e = embed_global_batch(batch, encoder, run.tokenizer, tid)
            batch = dict(batch, **{INSTRUCTION_EMBEDDING: jnp.asarray(e)})
        idx, w = pool_selection(state.params, state.lora, batch, pcfg, tid)
        # Evaluation follows the end-of-task snapshot: tasks 0..t are finished.
        return pp.pool_lowrank(state.lora, state.method_state, idx, w, pcfg, t + 1)

    pool_now = jax.device_get(pool)
    res = run_phase(
        c,
        phase_dir,
        init_params=base_params,
        method_state=jax.device_get(memory),
        lora_init=lambda r: jax.tree_util.tree_map(jnp.asarray, pool_now),
        forward_fn=make_pool_forward(run.model, pcfg, tid, t),
        after_step=after,
        lowrank_fn=lowrank_fn,
        finalize=finalize,
        wrap_iterator=wrap,
    )
    return res, res.state.method_state, res.state.lora


@functools.cache
def _minilm():
    from jaxlvlm.methods.instruction_embedding import load_instruction_encoder

    return load_instruction_encoder()


def check_base_lr(m: dict) -> None:
    """method.base_lr (read by _base_params, shared by the continual, lifelong and federated runners)."""
    if m["base_lr"] < 0:
        raise ValueError(f"config.method.base_lr={m['base_lr']}: use > 0, or 0 for optim.lr")


def _base_params(config, workdir, stream, m):
    """The shared starting model: trained on method.base_sources for base_steps when > 0, else
    config.init_from's parameters or the model's own init (config.seed)."""
    if m["base_steps"] <= 0:
        from jaxlvlm.train import setup as S
        from jaxlvlm.train import trainer as TR

        c = _phase_config(config, _specs_of(config, stream[0]), 0, stream, lora=False)
        run = TR.prepare_run(c, workdir)
        setup = S.plan_train_state(run.model, run.model_cfg, c, run.mesh, run.rules)
        if config.init_from:
            return TR.load_init_params(run, setup)
        return setup.create().params
    if not m["base_sources"]:
        raise ValueError("config.method.base_steps > 0 needs config.method.base_sources")
    c = _phase_config(
        config, [dict(s) for s in m["base_sources"]], m["base_steps"], stream, lora=False
    )
    with c.unlocked():
        c.data.tasks = tuple(
            dict.fromkeys([*stream, *(dict(s)["task"] for s in m["base_sources"])])
        )
        c.data.eval_sources = ()
        if m["base_lr"] > 0:
            c.optim.lr = float(m["base_lr"])
    res = run_phase(c, os.path.join(workdir, "base"), evaluate=False)
    return res.state.params


def _base_scores(config, workdir, stream, base_params, m):
    if not m["evaluate_base"]:
        return None
    path = os.path.join(workdir, "base_scores.json")
    if os.path.exists(path):
        with open(path) as f:
            return np.asarray(json.load(f)["scores"])
    c = _phase_config(config, _specs_of(config, stream[0]), 0, stream, lora=False)
    res = run_phase(
        c, os.path.join(workdir, "base_eval"), init_params=base_params, need_state=False
    )
    b = scores_vector(res.scores, stream)
    if jax.process_index() == 0:
        with open(path, "w") as f:
            json.dump({"tasks": stream, "scores": b.tolist()}, f)
    return b


def _same_tree(x, y) -> bool | None:
    if x is None:
        return None
    xs, ys = (
        jax.tree_util.tree_leaves(jax.device_get(x)),
        jax.tree_util.tree_leaves(jax.device_get(y)),
    )
    return len(xs) == len(ys) and all(
        np.array_equal(np.asarray(p), np.asarray(q)) for p, q in zip(xs, ys, strict=True)
    )


def _list(x):
    return None if x is None else np.asarray(x).tolist()


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def write_continual_report(workdir: str, s: dict) -> str | None:
    """report.md + summary.json (+ accuracy.png) in the workdir (process 0)."""
    if jax.process_index() != 0:
        return None
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(s, f, indent=1)
    tasks = s["tasks"]
    lines = [
        f"# jaxlvlm: continual instruction tuning ({s['approach']})",
        "",
        f"Stream: {' -> '.join(tasks)}",
        "",
    ]
    if "matrix" in s:
        a = np.asarray(s["matrix"])
        lines += ["## Metrics (scores 0-100)", ""]
        lines += _plots.markdown_table(list(s["metrics"]), [list(s["metrics"].values())]) + [""]
        lines += ["## Accuracy matrix a[t, i] (row: after training task t; column: task i)", ""]
        rows = [[t, *a[i]] for i, t in enumerate(tasks)]
        if s.get("base") is not None:
            rows.insert(0, ["(base model)", *s["base"]])
        lines += _plots.markdown_table(["after \\ on", *tasks], rows)
        lines.append("")
        png = _plots.plot_matrix(
            a,
            tasks,
            tasks,
            os.path.join(workdir, "accuracy.png"),
            title="accuracy matrix",
            xlabel="evaluated task",
            ylabel="after task",
            fmt="{:.0f}",
        )
        lines += [f"![accuracy]({png})", ""]
        if "frozen_base_unchanged" in s:
            lines += [
                f"Frozen LVLM parameters bitwise unchanged after the stream: {s['frozen_base_unchanged']}",
                "",
            ]
    else:
        lines += _plots.markdown_table(["", *tasks, "ACC"], [["joint", *s["final"], s["ACC"]]]) + [
            ""
        ]
    lines += [f"Training + evaluation time: {s['wall_s']:.1f} s", ""]
    path = os.path.join(workdir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path
