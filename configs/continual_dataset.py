"""Dataset-incremental stream (COAST-dataset / CoIN in spirit): different generators, including the
real handwritten digits (counting -> digits -> digit_pair -> grounding). See configs/continual_common.py.

mcq was the third generator until the learnability gate at 98 steps per task (docs/benchmark.md,
note of 2026-12-01): it stayed at its chance level, so it was replaced by the next learnable family
in the registry's order that the stream and its base do not use yet."""

from configs.continual_common import STREAM_STEPS_PER_TASK, stream_config

STREAM = [
    ("counting", "plain"),
    ("digits", "plain"),
    ("digit_pair", "plain"),
    ("grounding", "plain"),
]
BASE = [("attribute", "plain"), ("caption", "plain"), ("arithmetic", "plain")]


def get_config(arg: str | None = None):
    return stream_config(arg, STREAM, BASE, steps=STREAM_STEPS_PER_TASK["dataset"])
