"""Domain-incremental stream (COAST-domain in spirit): the same task families over changing visual
domains (plain -> noisy -> textured -> palette backgrounds/colours), on the real handwritten digits,
with the instruction wording changing with the domain (wording='domain': each domain asks with its
own phrasings, as when each domain is a different dataset; jaxlvlm.data.builtin.wording).

    python -m jaxlvlm.main --config configs/continual_domain.py:approach=continual_llava --workdir runs/cd
    python -m jaxlvlm.main --config configs/continual_domain.py:approach=seq_lora,order=1 --workdir ...
    python -m jaxlvlm.main --config configs/continual_domain.py:wording=shared --workdir ...  (one
        set of questions for every domain: the stream before the benchmark)

See configs/continual_common.py for the colon arguments.
"""

from configs.continual_common import stream_config

STREAM = [
    ("digits", "plain"),
    ("digits", "noisy"),
    ("digits", "textured"),
    ("digits", "palette"),  # light ink on a dark background: the largest shift
]
# The frozen base learns to see handwritten digits (sums/comparisons of two digits), to count and the
# answer formats; "which digit is this" is new to it, and each domain shifts the pixels under it.
BASE = [("digit_pair", "plain"), ("counting", "plain"), ("arithmetic", "plain")]
# Domain-incremental streams were built from counting before; on the small model trained from
# scratch counting stays near chance in a CPU budget, so the digits carry the stream now.


def get_config(arg: str | None = None):
    return stream_config(arg, STREAM, BASE, wording="domain")
