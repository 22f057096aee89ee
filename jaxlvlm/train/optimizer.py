"""AdamW with warm-up + cosine, global-norm clipping, and parameter groups chosen by path regex.

The optimizer acts on the trainable tree ``{'params': <model params>, 'lora': <LoRA factors>}``.
Paths are written without the leading 'params/' ('vision/...', 'connector/...', 'llm/...') and
LoRA leaves as 'lora/<target>/a'. Frozen leaves get ``set_to_zero`` inside ``multi_transform``, so they
hold no optimizer state; the train step also stops their gradients so no backward pass is spent on them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import optax

FROZEN = "frozen"


def path_str(path) -> str:
    """'vision/layers_0/attn/kernel' for a jax key path (dict keys, attributes, sequence indices)."""
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(k.name)
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        else:
            parts.append(str(k))
    return "/".join(parts)


def trainable_path_strs(trainable: dict) -> Any:
    """Tree of user-facing path strings for the trainable tree (see module docstring)."""

    def name(path, _):
        s = path_str(path)
        return s[len("params/") :] if s.startswith("params/") else s

    return jax.tree_util.tree_map_with_path(name, trainable)


def param_labels(
    trainable: dict, freeze: Sequence[str], lr_groups: Sequence[tuple[str, float]]
) -> Any:
    """Label per leaf: 'frozen' if a freeze regex matches (re.search), 'group<i>' for the first
    matching lr_groups regex, else 'default'."""
    freeze_re = [re.compile(p) for p in freeze]
    group_re = [re.compile(p) for p, _ in lr_groups]

    def label(path: str) -> str:
        if any(r.search(path) for r in freeze_re):
            return FROZEN
        for i, r in enumerate(group_re):
            if r.search(path):
                return f"group{i}"
        return "default"

    return jax.tree_util.tree_map(label, trainable_path_strs(trainable))


def frozen_mask(labels: Any) -> Any:
    return jax.tree_util.tree_map(lambda lab: lab == FROZEN, labels)


def make_schedule(
    lr: float, warmup_steps: int, total_steps: int, end_lr_ratio: float
) -> optax.Schedule:
    """Linear warm-up from 0 to ``lr`` over ``warmup_steps``, then cosine to ``lr * end_lr_ratio``
    at ``total_steps``."""
    warmup_steps = max(0, min(warmup_steps, total_steps - 1))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=lr,
        warmup_steps=warmup_steps,
        decay_steps=max(total_steps, warmup_steps + 1),
        end_value=lr * end_lr_ratio,
    )


def make_optimizer(
    trainable: dict, optim_cfg, total_steps: int
) -> tuple[optax.GradientTransformation, Any, optax.Schedule]:
    """Builds the optimizer for a (possibly abstract) trainable tree.

    optim_cfg keys: lr, warmup_steps, end_lr_ratio, b1, b2, eps, weight_decay, max_grad_norm,
    freeze (regexes), lr_groups ((regex, lr) pairs). Weight decay applies to matrices only (ndim >= 2).
    Returns (tx, labels tree, default schedule for logging).
    """
    lr_groups = [(str(p), float(v)) for p, v in optim_cfg.lr_groups]
    labels = param_labels(trainable, list(optim_cfg.freeze), lr_groups)
    peak = {"default": float(optim_cfg.lr)}
    peak.update({f"group{i}": v for i, (_, v) in enumerate(lr_groups)})
    decay_mask = jax.tree_util.tree_map(lambda x: len(x.shape) >= 2, trainable)

    def adamw(lr: float) -> optax.GradientTransformation:
        sched = make_schedule(lr, optim_cfg.warmup_steps, total_steps, optim_cfg.end_lr_ratio)
        return optax.adamw(
            sched,
            b1=optim_cfg.b1,
            b2=optim_cfg.b2,
            eps=optim_cfg.eps,
            weight_decay=optim_cfg.weight_decay,
            mask=decay_mask,
        )

    used = set(jax.tree_util.tree_leaves(labels))
    transforms = {name: adamw(v) for name, v in peak.items() if name in used}
    transforms[FROZEN] = optax.set_to_zero()
    chain = []
    if optim_cfg.max_grad_norm and optim_cfg.max_grad_norm > 0:
        chain.append(optax.clip_by_global_norm(optim_cfg.max_grad_norm))
    chain.append(optax.multi_transform(transforms, labels))
    schedule = make_schedule(
        optim_cfg.lr, optim_cfg.warmup_steps, total_steps, optim_cfg.end_lr_ratio
    )
    return optax.chain(*chain), labels, schedule
