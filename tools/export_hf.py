"""Exports a run's checkpoint as a Hugging Face directory, LoRA merged.

  python tools/export_hf.py --workdir runs/x --out hf_dir [--step N] [--no_merge]

Writes model.safetensors + config.json (LlavaForConditionalGeneration, or LlamaForCausalLM /
Qwen2ForCausalLM for a text-only run), the tokenizer with its chat template, and for a LLaVA the image
processor (preprocessor_config.json) and processor_config.json, so ``AutoProcessor`` and
``LlavaForConditionalGeneration.from_pretrained(hf_dir)`` load it. --no_merge keeps the trained base
weights and writes the LoRA factors as a PEFT adapter in hf_dir/adapter
(``PeftModel.from_pretrained(base, 'hf_dir/adapter')``).

The directory is also a valid --src for tools/convert_checkpoint.py: that is how a stage-2 run starts
from a stage-1 run (README, "Train your own LLaVA").
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxlvlm.convert import ConversionError  # noqa: E402
from jaxlvlm.train.run_export import ADAPTER_DIR, export_run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", required=True, help="the run's --workdir (local or gs://...)")
    parser.add_argument(
        "--out", required=True, help="output directory (created; local or gs://bucket/...)"
    )
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument(
        "--no_merge", action="store_true", help="write LoRA as a PEFT adapter instead of merging"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        run = export_run(args.workdir, args.out, step=args.step, merge=not args.no_merge)
    except (ConversionError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    what = type(run.model_cfg).__name__
    lora = ""
    if run.lora:
        lora = f"; LoRA {'as adapter in ' + ADAPTER_DIR + '/' if args.no_merge else 'merged'}"
    print(f"wrote {args.out}: {what} from {args.workdir} step {run.step}{lora}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
