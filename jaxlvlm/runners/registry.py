"""The runner registry: ``config.mode`` names a runner, a function ``run(config, workdir) -> dict``.

Runners register with a decorator, with the settings dataclass their ``config.method`` section maps
onto (validated at start, before anything trains); a runner named ``x`` that is not registered yet
is looked up by importing ``jaxlvlm.runners.x``, so method runners need no central list::

    @register_runner("multitask", settings=MultitaskSettings)
    def run_multitask(config, workdir):
        ...
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable
from typing import Any

Runner = Callable[[Any, str], dict]

RUNNERS: dict[str, Runner] = {}
SETTINGS: dict[str, type] = {}
NOT_RUNNERS = ("registry",)


def register_runner(name: str, settings: type | None = None) -> Callable[[Runner], Runner]:
    """Decorator registering ``fn`` as the runner for ``config.mode == name``; ``settings`` is the
    method's settings dataclass (None: the runner takes no method settings)."""

    def deco(fn: Runner) -> Runner:
        if name in RUNNERS and RUNNERS[name] is not fn:
            raise ValueError(f"runner {name!r} is registered twice ({RUNNERS[name]} and {fn})")
        RUNNERS[name] = fn
        if settings is not None:
            SETTINGS[name] = settings
        return fn

    return deco


def available_runners() -> list[str]:
    """Registered runner names plus the modules of jaxlvlm.runners that may register one."""
    names = set(RUNNERS)
    for info in pkgutil.iter_modules([os.path.dirname(os.path.abspath(__file__))]):
        if not info.name.startswith("_") and info.name not in NOT_RUNNERS:
            names.add(info.name)
    return sorted(names)


def get_runner(name: str) -> Runner:
    """Returns the runner for ``name``, importing ``jaxlvlm.runners.<name>`` on first use."""
    if name not in RUNNERS:
        try:
            importlib.import_module(f"jaxlvlm.runners.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"jaxlvlm.runners.{name}":
                raise
    if name not in RUNNERS:
        raise ValueError(f"config.mode={name!r} names no runner; available: {available_runners()}")
    return RUNNERS[name]


def runner_settings(name: str) -> type | None:
    """The settings dataclass of runner ``name`` (importing it first), or None."""
    get_runner(name)
    return SETTINGS.get(name)
