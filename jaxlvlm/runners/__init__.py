"""Runners: the loops behind ``config.mode`` (train, eval, and the methods' runners)."""

from jaxlvlm.runners.registry import RUNNERS, available_runners, get_runner, register_runner

__all__ = ["RUNNERS", "available_runners", "get_runner", "register_runner"]
