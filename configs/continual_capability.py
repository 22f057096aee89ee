"""Capability-incremental stream (COAST-capability in spirit): new task families one after another
(attribute -> counting -> grounding -> digits). See configs/continual_common.py for colon arguments.

spatial and reading were the third and fourth skills until the learnability gate at 98 steps per
task (docs/benchmark.md, note of 2026-12-01): spatial scored at its chance level and reading near 0,
so they were replaced by the next learnable families in the registry's order."""

from configs.continual_common import STREAM_STEPS_PER_TASK, stream_config

STREAM = [
    ("attribute", "plain"),
    ("counting", "plain"),
    ("grounding", "plain"),
    ("digits", "plain"),
]
BASE = [("caption", "plain"), ("arithmetic", "plain")]


def get_config(arg: str | None = None):
    return stream_config(arg, STREAM, BASE, steps=STREAM_STEPS_PER_TASK["capability"])
