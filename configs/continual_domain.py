"""Domain-incremental stream (COAST-domain in spirit): the same task families over changing visual
domains (plain -> noisy -> textured -> palette backgrounds/colours).

    python -m jaxlvlm.main --config configs/continual_domain.py:approach=continual_llava --workdir runs/cd
    python -m jaxlvlm.main --config configs/continual_domain.py:approach=seq_lora,order=1 --workdir ...

See configs/continual_common.py for the colon arguments.
"""

from configs.continual_common import stream_config

STREAM = [
    ("counting", "plain"),
    ("counting", "noisy"),
    ("counting", "textured"),
    ("counting", "palette"),
]
# The frozen base learns the answer formats and the visual basics on other families first.
BASE = [("attribute", "plain"), ("spatial", "plain"), ("arithmetic", "plain")]


def get_config(arg: str | None = None):
    return stream_config(arg, STREAM, BASE)
