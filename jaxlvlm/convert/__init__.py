"""Weight import/export: Hugging Face safetensors directories and GGUF files <-> jaxlvlm params."""

from jaxlvlm.convert.api import (
    SUPPORTED_ARCHITECTURES,
    load_converted,
    load_pretrained,
    save_converted,
    save_pretrained_hf,
)
from jaxlvlm.convert.hf_io import ConversionError

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "ConversionError",
    "load_converted",
    "load_pretrained",
    "save_converted",
    "save_pretrained_hf",
]
