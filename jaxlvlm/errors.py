"""Errors a user acts on: each message names the key, file or sample and what to do."""


class ConfigError(ValueError):
    """The config cannot run; the message names the key and what to do."""
