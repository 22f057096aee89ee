"""Capability-incremental stream (COAST-capability in spirit): new task families one after another
(attribute -> counting -> spatial -> reading). See configs/continual_common.py for colon arguments."""

from configs.continual_common import stream_config

STREAM = [("attribute", "plain"), ("counting", "plain"), ("spatial", "plain"), ("reading", "plain")]
BASE = [("caption", "plain"), ("arithmetic", "plain")]


def get_config(arg: str | None = None):
    return stream_config(arg, STREAM, BASE)
