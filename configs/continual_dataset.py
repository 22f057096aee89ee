"""Dataset-incremental stream (COAST-dataset / CoIN in spirit): different generators, including the
real handwritten digits (counting -> digits -> mcq -> grounding). See configs/continual_common.py."""

from configs.continual_common import stream_config

STREAM = [("counting", "plain"), ("digits", "plain"), ("mcq", "plain"), ("grounding", "plain")]
BASE = [("attribute", "plain"), ("caption", "plain"), ("arithmetic", "plain")]


def get_config(arg: str | None = None):
    return stream_config(arg, STREAM, BASE)
