"""Config fingerprints: a flat {dotted key: value} of what shapes a run, and the drift refusal.

A resumed run must be the run that saved the checkpoint. One policy everywhere (phases, federated
rounds, finished summaries): a resume under a config that differs in a key that shapes training is
refused, naming the first differing key; keys that only change logging, evaluation or placement
are left out of the fingerprint.
"""

from __future__ import annotations

import json
from typing import Any

from jaxlvlm.errors import ConfigError

# Keys (dotted prefixes) that change only evaluation, how data is read, or where the run is placed
# (a resume may land on another slice: orbax reshards, the math is the same).
EVALUATION = ("eval", "data.eval_sources", "data.eval_batch_size")
READING = ("data.read_threads", "data.prefetch", "data.worker_count")
PLACEMENT = ("distributed", "mesh")

# Keys that never change what a phase trains: resuming with other values is fine.
PHASE_IGNORED = (
    *PLACEMENT,
    *EVALUATION,
    *READING,
    "train.halt_after_steps",
    "train.progress_bar",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.eval_every",
    "train.peak_flops",
)


class ConfigDriftError(ConfigError):
    """A workdir holds a run with another config; the message names the key."""


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; empty dicts stay as a value."""
    if isinstance(d, dict) and d:
        out = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _under(key: str, sections: tuple[str, ...]) -> bool:
    return any(key == s or key.startswith(s + ".") for s in sections)


def fingerprint(config_dict: dict, ignore: tuple[str, ...] = PHASE_IGNORED) -> dict[str, Any]:
    """{dotted key: JSON value} of ``config_dict`` without the keys under ``ignore``."""
    flat = flatten(json.loads(json.dumps(config_dict, default=str, sort_keys=True)))
    return {k: v for k, v in sorted(flat.items()) if not _under(k, ignore)}


def check_fingerprint(where: str, stored: dict, current: dict) -> None:
    """Raises ConfigDriftError naming the first key whose value differs."""
    current = json.loads(json.dumps(current, default=str))
    differ = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if differ:
        k = differ[0]
        more = f" (and {len(differ) - 1} more: {differ[1:4]})" if len(differ) > 1 else ""
        raise ConfigDriftError(
            f"{where} belongs to a run with a different config: {k} was {stored.get(k)!r}, now "
            f"{current.get(k)!r}{more}. Rerun with the same config to resume, or use a new --workdir."
        )


def check_config_drift(where: str, saved_config: dict, config_dict: dict) -> None:
    """Refuses to resume ``where`` (a checkpoint) under a config that trains differently."""
    check_fingerprint(where, fingerprint(saved_config), fingerprint(config_dict))
