"""Typed method settings: a config's ``method`` section read into a method's frozen dataclass.

Each method owns one dataclass (its fields are the keys of ``config.method`` with their defaults);
``settings_from(cls, config.method)`` refuses unknown keys and values of the wrong type, naming them,
and the dataclass's ``__post_init__`` checks the values that cannot work. Runners read attributes
(``s.pool_size``), never string keys.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from jaxlvlm.errors import ConfigError

T = TypeVar("T")


def _plain(value: Any) -> Any:
    """ConfigDicts and lists -> dicts and tuples (hashable, frozen-friendly)."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    return value


def _check_type(cls, name: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint) or hint
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin in (int, float, str, bool) and not isinstance(value, origin):
        raise ConfigError(
            f"config.method.{name}={value!r}: expected {origin.__name__} for {cls.MODE!r}"
        )
    if origin is int and isinstance(value, bool):
        raise ConfigError(f"config.method.{name}={value!r}: expected an integer")
    return value


def settings_from(cls: type[T], section: Any) -> T:
    """``cls`` from a config's ``method`` section; unknown keys and wrong types raise ConfigError."""
    given = _plain(section) if section is not None else {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise ConfigError(
            f"config.method: unknown keys {unknown} for mode {cls.MODE!r}; known: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {k: _check_type(cls, k, v, hints[k]) for k, v in given.items()}
    return cls(**values)


def require(ok: bool, message: str) -> None:
    """Raises ConfigError(message) unless ``ok`` (for settings' __post_init__)."""
    if not ok:
        raise ConfigError(message)


def choose(cls, name: str, value: str, choices: tuple[str, ...]) -> None:
    """Refuses ``value`` for key ``name`` unless it is one of ``choices``."""
    require(value in choices, f"config.method.{name}={value!r}: choose one of {choices}")


@dataclasses.dataclass(frozen=True)
class BaseModelSettings:
    """The base model every approach of a comparison starts from (a trained LVLM in the papers).

    base_steps > 0: trained on base_sources for base_steps at base_lr (0 = optim.lr) in
    <workdir>/base; else config.init_from's parameters or the model's own init (config.seed).
    base_eval_every > 0: validate the base every this many steps on base_val_sources (default:
      the builtin base_sources with split 'val', at most base_val_num samples each) and stop once
      the mean score did not improve for base_patience validations; base_steps is then the cap.
      The validation scores are in <workdir>/base/phase.json.
    evaluate_base: score the base on every task first (the b vector of FWT).
    """

    base_steps: int = 0
    base_sources: tuple = ()
    base_lr: float = 0.0
    base_eval_every: int = 0
    base_patience: int = 2
    base_val_sources: tuple = ()
    base_val_num: int = 100
    evaluate_base: bool = True

    def check_base(self) -> None:
        require(
            self.base_lr >= 0, f"config.method.base_lr={self.base_lr}: use > 0, or 0 for optim.lr"
        )
        require(
            self.base_steps <= 0 or bool(self.base_sources),
            "config.method.base_steps > 0 needs config.method.base_sources",
        )
        require(
            self.base_eval_every >= 0 and self.base_patience >= 1 and self.base_val_num >= 1,
            "config.method: need base_eval_every >= 0, base_patience >= 1 and base_val_num >= 1",
        )
        if self.base_eval_every > 0 and not self.base_val_sources:
            other = [s for s in self.base_sources if dict(s).get("type") != "builtin"]
            require(
                not other,
                f"config.method.base_eval_every > 0: base source {dict(other[0]) if other else ''} "
                "has no 'val' split to derive; give config.method.base_val_sources",
            )

    def base_validation(self) -> tuple[dict, ...]:
        """The base model's validation specs (base_val_sources, or the builtin base sources'
        'val' split with at most base_val_num samples each)."""
        if self.base_val_sources:
            return tuple(dict(s) for s in self.base_val_sources)
        return tuple(
            dict(
                s,
                split="val",
                num=min(int(dict(s).get("num", self.base_val_num)), self.base_val_num),
            )
            for s in self.base_sources
        )
