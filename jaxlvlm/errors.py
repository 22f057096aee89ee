"""Errors a user acts on: each message names the key, file or sample and what to do."""


class ConfigError(ValueError):
    """The config cannot run; the message names the key and what to do."""


class ConversionError(ValueError):
    """A checkpoint or tokenizer cannot be converted; the message says which file/key and what to do."""
