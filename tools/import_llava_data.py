"""Import LLaVA conversation data (JSON/JSONL + image folder) into a TFDS array_record dataset.

  python tools/import_llava_data.py --split train=data/train.jsonl --split val=data/val.json \
      --image_root data/images --data_dir ~/jaxlvlm_data --name my_vqa [--on_bad_sample skip --max_bad_samples 50]

  # the built-in suite, written once (instead of generated on the fly):
  python tools/import_llava_data.py --builtin counting,attribute --num train=2000,val=200 --seed 0 \
      --data_dir ~/jaxlvlm_data

Images are verified with Pillow and stored as encoded bytes. Bad samples stop the import
(--on_bad_sample error, the default) or are skipped, counted per reason and written to
<dataset dir>/import_report.json. Train with data.sources = [{'type': 'tfds', 'data_dir': ..., 'name': ...,
'split': 'train'}].
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxlvlm.data.bad_samples import BadSamplePolicy  # noqa: E402
from jaxlvlm.data.llava_json import iter_llava_records  # noqa: E402
from jaxlvlm.data.tfds_builder import write_builtin_suite, write_tfds_dataset  # noqa: E402
from jaxlvlm.files import write_json_atomic  # noqa: E402


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"{what} {item!r}: expected NAME=VALUE")
        key, value = item.split("=", 1)
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data_dir", required=True, help="local directory or gs://bucket/...")
    parser.add_argument("--name", help="dataset name (LLaVA import)")
    parser.add_argument(
        "--split", action="append", default=[], help="SPLIT=path.json[l], repeatable"
    )
    parser.add_argument("--image_root", help="folder the 'image' paths are relative to")
    parser.add_argument(
        "--default_task", default="default", help="task of entries without a 'task' field"
    )
    parser.add_argument("--on_bad_sample", choices=("error", "skip"), default="error")
    parser.add_argument("--max_bad_samples", type=int, default=100)
    parser.add_argument("--builtin", help="comma-separated built-in families to write instead")
    parser.add_argument("--num", default="train=1000,val=100", help="built-in: SPLIT=N,...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--domain", default="plain")
    parser.add_argument("--image_size", type=int, default=32)
    args = parser.parse_args(argv)

    if args.builtin:
        splits = {k: int(v) for k, v in _pairs(args.num.split(","), "--num").items()}
        written = write_builtin_suite(
            args.data_dir, args.builtin.split(","), splits, args.seed, args.domain, args.image_size
        )
        report = {"datasets": {family: str(path) for family, path in written.items()}}
        print(json.dumps(report, indent=2))
        return report

    if not (args.name and args.split and args.image_root):
        parser.error("a LLaVA import needs --name, --split SPLIT=PATH and --image_root")
    split_paths = _pairs(args.split, "--split")
    policies = {
        split: BadSamplePolicy(args.on_bad_sample, args.max_bad_samples) for split in split_paths
    }
    split_records = {
        split: (
            lambda p=path, s=split: iter_llava_records(
                p, args.image_root, policies[s], True, args.default_task
            )
        )
        for split, path in split_paths.items()
    }
    out = write_tfds_dataset(
        args.data_dir, args.name, split_records, description=f"imported from {split_paths}"
    )
    report = {
        "dataset_dir": str(out),
        "sources": split_paths,
        "bad_samples": {split: policy.summary() for split, policy in policies.items()},
    }
    write_json_atomic(out / "import_report.json", report, what="import report")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
