"""Stage 1 from two separate pretrained towers: the run assembles its starting LVLM at its start.

config.assemble.vision and config.assemble.llm (configs/llava15.py's vision= and llm=) name a
vision tower and a language model (Hugging Face directories, a Llama GGUF file, or converted
directories). The first run in a workdir assembles them (jaxlvlm.convert.towers: '<image>' added,
vocabulary grown, a fresh connector) into <workdir>/assembled, and records what it was built from
in assembled/assembly.json. Every run, the first and any rerun, then starts from that directory
(config.init_from and config.tokenizer point at it). A rerun finds it and never assembles again:
its checkpoint, not the towers, is what it resumes from; a rerun under other assemble keys is
refused naming the key, and a workdir with checkpoints but no assembled directory is refused
rather than assembled anew under them.
"""

from __future__ import annotations

import copy
import logging

import jax
import ml_collections

from jaxlvlm.convert import ConversionError
from jaxlvlm.convert.towers import assemble_towers, write_assembled
from jaxlvlm.data.tokenizer import load_tokenizer_with_template
from jaxlvlm.errors import ConfigError
from jaxlvlm.files import PathLike, read_json, run_path, write_json_atomic

ASSEMBLED_DIR = "assembled"
RECORD_FILE = "assembly.json"
# What the assembled model depends on; the paths are recorded absolute.
KEYS = ("vision", "llm", "tokenizer", "chat_template", "vision_feature_layer", "seed")
_PATHS = ("vision", "llm", "tokenizer", "chat_template")


def uses_towers(config: ml_collections.ConfigDict) -> bool:
    return bool(config.assemble.vision or config.assemble.llm)


def assembly_record(config: ml_collections.ConfigDict) -> dict:
    """{key: value} of config.assemble that the assembled model depends on."""
    a = config.assemble
    return {k: str(run_path(a[k])) if k in _PATHS and a[k] else a[k] for k in KEYS} | {
        "scan_layers": bool(config.runtime.scan_layers)
    }


def start_from_towers(
    config: ml_collections.ConfigDict, workdir: PathLike
) -> ml_collections.ConfigDict:
    """``config`` unchanged without config.assemble; else a copy whose init_from and tokenizer are
    <workdir>/assembled, assembled now when this workdir has none yet.

    Raises ConfigError naming the key: a tower that does not load, a rerun with other assemble
    keys, or checkpoints without their assembled directory.
    """
    if not uses_towers(config):
        return config
    out = run_path(workdir) / ASSEMBLED_DIR
    wanted = assembly_record(config)
    record = read_json(out / RECORD_FILE)
    if record is None:
        _refuse_over_checkpoints(workdir, out)
        _assemble(wanted, out)
    else:
        for key in sorted(set(wanted) | set(record)):
            if record.get(key) != wanted.get(key):
                raise ConfigError(
                    f"{out} was assembled with config.assemble.{key}={record.get(key)!r}, this run "
                    f"asks for {wanted.get(key)!r}; use a new --workdir (or the old value)"
                )
        logging.info("starting from %s (assembled by an earlier run in this workdir)", out)
    config = copy.deepcopy(config)
    config.init_from = str(out)
    config.tokenizer = str(out)
    return config


def _refuse_over_checkpoints(workdir: PathLike, out) -> None:
    ckpt = run_path(workdir) / "checkpoints"
    if ckpt.is_dir() and any(ckpt.iterdir()):
        raise ConfigError(
            f"{workdir} has checkpoints but not the model they started from ({out}); a new "
            "assembly would not be what they trained. Restore that directory or use a new --workdir"
        )


def _assemble(wanted: dict, out) -> None:
    if jax.process_count() > 1:
        raise ConfigError(
            "config.assemble on a multi-host run: assemble once with tools/assemble_llava.py "
            "and start every host from it with init_from= (configs/llava15.py init=)"
        )
    # The record is written last and is the completion mark (a rename is not atomic on object
    # storage): a directory without it is an interrupted attempt, removed and assembled again.
    if out.exists():
        out.rmtree()
    try:
        tokenizer = load_tokenizer_with_template(
            wanted["tokenizer"] or wanted["llm"], wanted["chat_template"] or None
        )
        built = assemble_towers(
            wanted["vision"],
            wanted["llm"],
            tokenizer,
            vision_feature_layer=wanted["vision_feature_layer"],
            scan_layers=wanted["scan_layers"],
            seed=wanted["seed"],
        )
    except (ConversionError, FileNotFoundError, ValueError) as e:
        raise ConfigError(f"config.assemble (vision / llm / tokenizer): {e}") from e
    write_assembled(str(out), built, tokenizer)
    write_json_atomic(out / RECORD_FILE, wanted, what="assembly record")
    logging.info("assembled %s: %s", out, built.describe())
