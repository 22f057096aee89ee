"""Config validation at start: unknown and missing keys, and values that cannot work, are named.

The schema is configs/common.py ``base_config()``. Free-form sections: ``method`` (owned by the
method's runner) and ``model.connector_kwargs``; ``model.vision`` / ``model.text`` are checked against
the fields of VisionConfig / TextConfig instead.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import ml_collections

from jaxlvlm.errors import ConfigError
from jaxlvlm.models.config import TextConfig, VisionConfig
from jaxlvlm.train.config_schema import base_config
from jaxlvlm.train.lora import LORA_TARGETS
from jaxlvlm.train.losses import TOKEN_WEIGHTS

FREE_FORM = ("method", "model.connector_kwargs")


def _as_dict(c: Any) -> Any:
    return c.to_dict() if isinstance(c, ml_collections.ConfigDict) else c


def _walk(schema: dict, cfg: dict, prefix: str, errors: list[str]) -> None:
    for key in sorted(set(cfg) - set(schema)):
        full = prefix + key
        errors.append(
            f"unknown config key {full!r}; known keys here: {sorted(schema)} (a typo? keys are "
            "declared in configs/common.py base_config())"
        )
    for key in sorted(set(schema) - set(cfg)):
        errors.append(
            f"missing config key {prefix + key!r}; start config files from "
            "configs.common.base_config() so every key has a default"
        )
    for key in sorted(set(schema) & set(cfg)):
        full = prefix + key
        if full in FREE_FORM or full in ("model.vision", "model.text"):
            continue
        if isinstance(schema[key], dict) and isinstance(cfg[key], dict):
            _walk(schema[key], cfg[key], full + ".", errors)


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def validate_config(
    config: ml_collections.ConfigDict, known_modes: Sequence[str] | None = None
) -> None:
    """Raises ConfigError listing every problem found (not just the first).

    known_modes: the runner names config.mode may take (jaxlvlm.main passes the registry's).
    """
    errors: list[str] = []
    cfg = _as_dict(config)
    _walk(_as_dict(base_config()), cfg, "", errors)
    model = cfg.get("model", {})
    for section, cls in (("vision", VisionConfig), ("text", TextConfig)):
        for key in sorted(set(model.get(section, {}) or {}) - _fields(cls)):
            errors.append(
                f"unknown config key 'model.{section}.{key}'; {cls.__name__} fields are "
                f"{sorted(_fields(cls))}"
            )
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    _check_values(config, errors, known_modes)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))


def _check_values(c: ml_collections.ConfigDict, errors: list[str], known_modes) -> None:
    if known_modes is not None and c.mode not in known_modes:
        errors.append(f"config.mode={c.mode!r} names no runner; available: {sorted(known_modes)}")
    a = c.assemble
    if bool(a.vision) != bool(a.llm):
        errors.append(
            f"config.assemble.vision={a.vision!r}, config.assemble.llm={a.llm!r}: starting from "
            "two towers needs both (or neither)"
        )
    if (a.vision or a.llm) and c.init_from:
        errors.append(
            f"config.init_from={c.init_from!r} and config.assemble: a run starts either from a "
            "converted checkpoint or from two towers; leave one empty"
        )
    shape = tuple(c.mesh.shape)
    if len(shape) != 3 or shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        errors.append(
            f"config.mesh.shape={shape}: need 3 sizes (data, fsdp, tensor), positive or one -1"
        )
    t = c.train
    for key in ("steps", "grad_accum"):
        if t[key] < 1:
            errors.append(f"config.train.{key}={t[key]} must be >= 1")
    bs = c.data.global_batch_size
    if bs < 1:
        errors.append(f"config.data.global_batch_size={bs} must be >= 1")
    elif t.grad_accum >= 1 and bs % t.grad_accum:
        errors.append(
            f"config.data.global_batch_size={bs} is not divisible by "
            f"config.train.grad_accum={t.grad_accum}"
        )
    if t.loss_chunk < 0:
        errors.append(f"config.train.loss_chunk={t.loss_chunk} must be >= 0 (0 = off)")
    elif t.loss_chunk > 0:
        if t.loss not in TOKEN_WEIGHTS:
            errors.append(
                f"config.train.loss_chunk={t.loss_chunk} needs a loss with a token-weight form "
                f"({sorted(TOKEN_WEIGHTS)}); config.train.loss={t.loss!r} has none: set "
                "loss_chunk=0"
            )
    for key in ("log_every", "checkpoint_every"):
        if t[key] < 1:
            errors.append(f"config.train.{key}={t[key]} must be >= 1")
    if c.optim.lr < 0:
        errors.append(f"config.optim.lr={c.optim.lr} must be >= 0")
    patterns = [("config.optim.freeze", p) for p in c.optim.freeze]
    for i, group in enumerate(c.optim.lr_groups):
        if len(group) != 2:
            errors.append(f"config.optim.lr_groups[{i}]={group!r}: expected (regex, lr)")
            continue
        patterns.append((f"config.optim.lr_groups[{i}]", group[0]))
    for where, p in patterns:
        try:
            re.compile(p)
        except re.error as e:
            errors.append(f"{where}: bad regex {p!r}: {e}")
    if c.lora.enabled:
        bad = [x for x in c.lora.targets if x not in LORA_TARGETS]
        if bad:
            errors.append(f"config.lora.targets: unknown {bad}; choose from {list(LORA_TARGETS)}")
        if c.lora.rank < 1:
            errors.append(f"config.lora.rank={c.lora.rank} must be >= 1")
    for key in ("compute_dtype", "param_dtype"):
        if c.runtime[key] not in ("float32", "bfloat16", "float16"):
            errors.append(f"config.runtime.{key}={c.runtime[key]!r}: use float32 or bfloat16")
