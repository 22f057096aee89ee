"""Builds a LLaVA from a vision checkpoint and a language-model checkpoint, with a fresh connector:
the start of LLaVA's stage 1.

  python tools/assemble_llava.py --vision hf/siglip --llm hf/smollm2 --out ckpt/llava_stage0 \
      [--tokenizer DIR_OR_GGUF] [--chat_template FILE.jinja] [--vision_feature_layer -2] \
      [--scan_layers] [--seed 0]

--vision: a CLIPVisionModel / SiglipVisionModel directory (safetensors), or a converted one.
--llm: a LlamaForCausalLM / Qwen2ForCausalLM directory, a Llama .gguf file, or a converted one.
--tokenizer: defaults to --llm (its tokenizer files, or the GGUF's own tokenizer).

The output directory is both a converted checkpoint (model_config.json + params/, for a config's
``init_from``) and a tokenizer directory (for ``tokenizer=``), with ``<image>`` added if it was
missing and the embedding / LM head grown as jaxlvlm.convert.assemble describes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxlvlm.convert import ConversionError, load_converted, load_pretrained  # noqa: E402
from jaxlvlm.convert.api import MODEL_CONFIG_FILE, save_converted  # noqa: E402
from jaxlvlm.convert.assemble import (  # noqa: E402
    IMAGE_TOKEN,
    add_image_token,
    assemble_lvlm,
    round_vocab,
)
from jaxlvlm.convert.hf_processor import write_processor_files  # noqa: E402
from jaxlvlm.files import local_output_dir, run_path  # noqa: E402


def _load_tower(path: str, scan: bool, what: str):
    if (run_path(path) / MODEL_CONFIG_FILE).is_file():
        cfg, params = load_converted(path)
        if ("layers" in (params.get("llm", params))) != scan:
            raise ConversionError(
                f"--{what} {path}: converted with a different --scan_layers than asked for here"
            )
        return cfg, params
    return load_pretrained(path, scan_layers=scan)


def _load_tokenizer(spec: str, chat_template: str | None):
    from jaxlvlm.data.tokenizer import check_tokenizer, load_tokenizer

    if chat_template is None:
        try:
            return load_tokenizer(spec)
        except ValueError as e:
            raise ConversionError(
                f"{e}; a base LM without a chat template needs --chat_template FILE.jinja"
            ) from e
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(spec) if os.path.isdir(spec) else load_tokenizer(spec)
    tok.chat_template = Path(chat_template).read_text()
    check_tokenizer(tok, spec)
    return tok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vision", required=True, help="vision tower: HF dir or converted dir")
    parser.add_argument("--llm", required=True, help="language model: HF dir, .gguf, converted dir")
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument("--tokenizer", help="tokenizer dir or .gguf (default: --llm)")
    parser.add_argument(
        "--chat_template", help="a Jinja chat template file, if the tokenizer has none"
    )
    parser.add_argument("--vision_feature_layer", type=int, default=-2)
    parser.add_argument("--scan_layers", action="store_true", help="stack layers (nn.scan layout)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the connector's init")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        vision = _load_tower(args.vision, args.scan_layers, "vision")
        text = _load_tower(args.llm, args.scan_layers, "llm")
        tokenizer = _load_tokenizer(args.tokenizer or args.llm, args.chat_template)
        image_id, added = add_image_token(tokenizer)
        vocab = max(round_vocab(len(tokenizer)), text[0].vocab_size)
        cfg, params = assemble_lvlm(
            vision,
            text,
            image_id,
            vocab,
            vision_feature_layer=args.vision_feature_layer,
            seed=args.seed,
        )
    except (ConversionError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_converted(args.out, cfg, params)
    with local_output_dir(args.out) as local:  # transformers writes local files; copied if gs://
        write_processor_files(local, cfg, tokenizer, IMAGE_TOKEN)
    grown = f"{text[0].vocab_size} -> {cfg.text.vocab_size}"
    print(
        f"wrote {args.out}: {cfg.vision.style} tower + fresh {cfg.connector} + {cfg.text.arch} LM; "
        f"'{IMAGE_TOKEN}' id {image_id} ({'added' if added else 'already there'}); vocabulary "
        f"rows {grown}; {cfg.image_tokens_per_image} image tokens per image"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
