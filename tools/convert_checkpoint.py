"""Turns a Hugging Face safetensors directory or a .gguf file into a converted orbax checkpoint.

  python tools/convert_checkpoint.py --src path/to/hf_dir_or_model.gguf --out path/to/converted
      [--scan_layers] [--dtype float32|bfloat16]

The output directory holds model_config.json (the model config as a dict, plus the params' layer
layout) and params/ (orbax StandardCheckpointer), which a training config starts from with its
``init_from`` key (jaxlvlm.convert.load_converted). --scan_layers must match the RuntimeConfig of the
run that loads it. Supported inputs: see jaxlvlm.convert.SUPPORTED_ARCHITECTURES (and Llama GGUF).
The tokenizer and processor files of an HF directory are copied along, so the output also serves as
a config's ``tokenizer=``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxlvlm.convert import ConversionError, load_pretrained, save_converted  # noqa: E402
from jaxlvlm.files import run_path  # noqa: E402

# Files of a Hugging Face directory that are not weights: tokenizer, chat template, processors.
_SIDE_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "preprocessor_config.json",
    "processor_config.json",
    "generation_config.json",
)


def copy_side_files(src: str, out: str) -> list[str]:
    """Copies the tokenizer/processor files of HF directory ``src`` into ``out`` (either may be a
    gs:// URL); returns their names."""
    src_p, out_p = run_path(src), run_path(out)
    if not src_p.is_dir():
        return []
    names = [n for n in _SIDE_FILES if (src_p / n).is_file()]
    for name in names:
        (src_p / name).copy(out_p / name, overwrite=True)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--src", required=True, help="HF model directory or .gguf file (local or gs://...)"
    )
    parser.add_argument(
        "--out", required=True, help="output directory (created; local or gs://bucket/...)"
    )
    parser.add_argument(
        "--scan_layers", action="store_true", help="stack layers on a leading axis (nn.scan layout)"
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        config, params = load_pretrained(args.src, scan_layers=args.scan_layers)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    dtype = jax.numpy.dtype(args.dtype)
    params = jax.tree.map(lambda x: np.asarray(x).astype(dtype), params)
    save_converted(args.out, config, params)
    copied = copy_side_files(args.src, args.out)
    if copied:
        print(f"copied {', '.join(copied)}")
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    print(f"wrote {args.out}: {type(config).__name__}, {n:,} parameters ({args.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
