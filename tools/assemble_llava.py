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
missing and the embedding / LM head grown as jaxlvlm.convert.assemble describes. The work is
jaxlvlm.convert.towers'; configs/llava15.py's vision= and llm= do the same at the start of a run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxlvlm.convert import ConversionError  # noqa: E402
from jaxlvlm.convert.towers import assemble_towers, write_assembled  # noqa: E402
from jaxlvlm.data.tokenizer import load_tokenizer_with_template  # noqa: E402


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
        tokenizer = load_tokenizer_with_template(args.tokenizer or args.llm, args.chat_template)
        built = assemble_towers(
            args.vision,
            args.llm,
            tokenizer,
            vision_feature_layer=args.vision_feature_layer,
            scan_layers=args.scan_layers,
            seed=args.seed,
        )
    except (ConversionError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_assembled(args.out, built, tokenizer)
    print(f"wrote {args.out}: {built.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
