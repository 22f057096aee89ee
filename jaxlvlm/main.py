"""jaxlvlm's entry point: ``python -m jaxlvlm.main --config configs/demo.py --workdir DIR``.

Flags: --config (an ml_collections config file with ``get_config(arg)``; ``file.py:arg`` passes
``arg``; ``--config.a.b=value`` overrides a key), --workdir. The config is validated first (unknown,
missing or unusable keys are named), then ``config.mode`` picks the runner (train, eval, or a
method's). Rerunning the same command on the same workdir resumes from its latest checkpoint.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from jaxlvlm.errors import ConfigError
from jaxlvlm.files import StorageError, makedirs
from jaxlvlm.host_memory import keep_freed_host_memory
from jaxlvlm.methods.settings import settings_from
from jaxlvlm.runners.registry import available_runners, get_runner, runner_settings
from jaxlvlm.train.assembly import start_from_towers
from jaxlvlm.train.checkpoint import CheckpointRestoreError, CheckpointSaveError
from jaxlvlm.train.config_check import validate_config
from jaxlvlm.train.distributed import maybe_initialize
from jaxlvlm.train.loop import NonFiniteLossError

# Config files import configs.common: make the repository root importable when the file lives in a
# configs/ directory and the command runs from elsewhere.
for _i, _arg in enumerate(sys.argv):
    _path = ""
    if _arg.startswith("--config="):
        _path = _arg.split("=", 1)[1].split(":", 1)[0]
    elif _arg == "--config" and _i + 1 < len(sys.argv):
        _path = sys.argv[_i + 1].split(":", 1)[0]
    if _path:
        _root = os.path.dirname(os.path.dirname(os.path.abspath(_path)))
        if _root not in sys.path:
            sys.path.append(_root)

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file (file.py[:arg])")
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and the report")
flags.mark_flags_as_required(["config", "workdir"])


# Exit status per kind of error a user acts on (any other exception is a bug: traceback, 1).
EXIT_CODES = (
    (ConfigError, 2),
    (NonFiniteLossError, 3),
    (CheckpointSaveError, 4),
    (CheckpointRestoreError, 4),
    (StorageError, 4),
)


def run(config, workdir: str) -> dict:
    """Validates ``config`` (its method section too) and runs its mode's runner in ``workdir``
    (also callable from Python)."""
    validate_config(config, known_modes=available_runners())
    settings = runner_settings(config.mode)
    if settings is not None:
        settings_from(settings, config.method)  # refuse bad method keys before anything trains
    maybe_initialize(config.distributed)
    makedirs(workdir)  # a local directory or a URL (gs://bucket/run: directories are implicit)
    config = start_from_towers(config, workdir)  # config.assemble: init_from = <workdir>/assembled
    return get_runner(config.mode)(config, workdir)


class _QuietLibraries(logging.Filter):
    """Drops INFO chatter of orbax (several lines per checkpoint); warnings still pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "orbax" not in record.pathname


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger().setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietLibraries())
    # Before anything starts JAX's backend: on a CPU run freed host buffers stay in the process
    # (jaxlvlm/host_memory.py; JAXLVLM_KEEP_HOST_MEMORY=0 turns it off).
    logging.info("host memory: %s", keep_freed_host_memory())
    try:
        run(_CONFIG.value, _WORKDIR.value)
    except tuple(kind for kind, _ in EXIT_CODES) as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(exit_code(e))


def exit_code(error: BaseException) -> int:
    """The process exit status for an error a user acts on (EXIT_CODES)."""
    return next(code for kind, code in EXIT_CODES if isinstance(error, kind))


if __name__ == "__main__":
    app.run(main)
