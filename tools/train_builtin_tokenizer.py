"""Regenerates the built-in suite's BPE tokenizer (deterministic: same files on every run).

  python tools/train_builtin_tokenizer.py                 # rewrites jaxlvlm/data/builtin/assets/tokenizer
  python tools/train_builtin_tokenizer.py --out_dir DIR   # writes elsewhere

The corpus is the suite's own text (every family's prompts and answers, train split, a fixed seed);
see jaxlvlm/data/builtin/bpe_tokenizer.py for the vocabulary, special tokens and chat template.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxlvlm.data.builtin.bpe_tokenizer import (  # noqa: E402
    _ASSET_DIR,
    CORPUS_PER_FAMILY,
    CORPUS_SEED,
    VOCAB_SIZE,
    save_tokenizer_dir,
    train_tokenizer,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out_dir", default=str(_ASSET_DIR), help="output directory")
    parser.add_argument(
        "--per_family", type=int, default=CORPUS_PER_FAMILY, help="records per family"
    )
    parser.add_argument("--seed", type=int, default=CORPUS_SEED, help="corpus seed")
    parser.add_argument(
        "--vocab_size", type=int, default=VOCAB_SIZE, help="maximum vocabulary size"
    )
    args = parser.parse_args(argv)
    tokenizer = train_tokenizer(args.per_family, args.seed, args.vocab_size)
    out = save_tokenizer_dir(tokenizer, args.out_dir)
    print(f"wrote {out} (vocabulary {tokenizer.get_vocab_size()} tokens)")


if __name__ == "__main__":
    main()
