"""A LLaVA from two checkpoint paths: load the vision tower and the language model, assemble them
with a fresh connector (jaxlvlm.convert.assemble) and write the result.

The written directory is both a converted checkpoint (model_config.json + params/, what a config's
``init_from`` reads) and a tokenizer directory with LlavaProcessor's files (what ``tokenizer=``
reads). Used by tools/assemble_llava.py and by a run that starts from two towers
(config.assemble, jaxlvlm.train.assembly).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxlvlm.convert.api import (
    MODEL_CONFIG_FILE,
    load_converted,
    load_pretrained,
    save_converted,
)
from jaxlvlm.convert.assemble import IMAGE_TOKEN, add_image_token, assemble_lvlm, round_vocab
from jaxlvlm.convert.hf_io import ConversionError
from jaxlvlm.convert.hf_processor import write_processor_files
from jaxlvlm.files import local_output_dir, run_path
from jaxlvlm.models.config import LVLMConfig


@dataclasses.dataclass(frozen=True)
class Assembled:
    """An assembled LVLM: its config and params, where '<image>' went, and the LM's old vocabulary."""

    config: LVLMConfig
    params: dict[str, Any]
    image_token_id: int
    image_token_added: bool
    llm_vocab_size: int

    def describe(self) -> str:
        """One line on what was built (for the log and the command line)."""
        c = self.config
        return (
            f"{c.vision.style} tower + fresh {c.connector} + {c.text.arch} LM; '{IMAGE_TOKEN}' id "
            f"{self.image_token_id} ({'added' if self.image_token_added else 'already there'}); "
            f"vocabulary rows {self.llm_vocab_size} -> {c.text.vocab_size}; "
            f"{c.image_tokens_per_image} image tokens per image"
        )


def load_tower(path: str, scan_layers: bool, what: str):
    """(config, params) of a tower: a Hugging Face directory / GGUF file, or a converted directory
    (which must have the asked layer layout). ``what`` names the argument in errors."""
    if not run_path(path).exists():
        raise FileNotFoundError(f"{what} {path}: no such file or directory")
    if (run_path(path) / MODEL_CONFIG_FILE).is_file():
        cfg, params = load_converted(path)
        if ("layers" in (params.get("llm", params))) != scan_layers:
            raise ConversionError(
                f"{what} {path}: converted with scan_layers={not scan_layers}, but this assembly "
                f"asks for scan_layers={scan_layers}; convert it again or change the setting"
            )
        return cfg, params
    return load_pretrained(path, scan_layers=scan_layers)


def assemble_towers(
    vision: str,
    llm: str,
    tokenizer: Any,
    *,
    vision_feature_layer: int = -2,
    scan_layers: bool = False,
    seed: int = 0,
) -> Assembled:
    """The LVLM of the vision tower at ``vision`` and the LM at ``llm`` with a fresh connector.

    tokenizer: the LM's tokenizer (transformers); '<image>' is added to it in place when missing,
    and the embedding (and an untied LM head) grow to len(tokenizer) rounded up to 64 rows.
    Raises ConversionError / FileNotFoundError naming the path and what to do.
    """
    vision_tower = load_tower(vision, scan_layers, "vision tower")
    text = load_tower(llm, scan_layers, "language model")
    image_id, added = add_image_token(tokenizer)
    vocab = max(round_vocab(len(tokenizer)), text[0].vocab_size)
    cfg, params = assemble_lvlm(
        vision_tower, text, image_id, vocab, vision_feature_layer=vision_feature_layer, seed=seed
    )
    return Assembled(cfg, params, image_id, added, text[0].vocab_size)


def write_assembled(out: str, assembled: Assembled, tokenizer: Any) -> None:
    """Writes ``out`` (local or a URL): the converted checkpoint and the tokenizer + processor
    files (transformers writes only local files: staged locally and copied when ``out`` is a URL)."""
    save_converted(out, assembled.config, assembled.params)
    with local_output_dir(out) as local:
        write_processor_files(local, assembled.config, tokenizer, IMAGE_TOKEN)
