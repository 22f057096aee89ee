"""Reading and writing Hugging Face checkpoint directories without pickle.

Only safetensors are read. PyTorch pickle files (.bin/.pt/.pth) are refused: unpickling runs
arbitrary code. Remote code (``auto_map`` in config.json) is never executed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

import ml_dtypes
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from jaxlvlm.errors import ConversionError  # noqa: F401 - re-exported

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def read_config(path: str) -> dict:
    """Returns config.json of an HF directory as a dict."""
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise ConversionError(f"{path}: no config.json; expected a Hugging Face model directory")
    with open(cfg_path) as f:
        return json.load(f)


def read_safetensors_dir(path: str) -> dict[str, np.ndarray]:
    """Loads every tensor of the *.safetensors files of ``path`` as numpy arrays (bf16 -> float32).

    Raises ConversionError naming the file when only pickle weights are present.
    """

    files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    if not files:
        pickles = sorted(f for f in os.listdir(path) if f.endswith(PICKLE_SUFFIXES))
        if pickles:
            raise ConversionError(
                f"{os.path.join(path, pickles[0])}: PyTorch pickle weights are not loaded (unpickling "
                "runs arbitrary code). Convert them to safetensors first, e.g. "
                "`model = AutoModel.from_pretrained(dir); model.save_pretrained(out, "
                "safe_serialization=True)` in a trusted environment."
            )
        raise ConversionError(f"{path}: no *.safetensors weight files found")
    tensors: dict[str, np.ndarray] = {}
    for fname in files:
        with safe_open(os.path.join(path, fname), framework="numpy") as f:
            for key in f.keys():
                try:
                    tensors[key] = f.get_tensor(key)
                except TypeError:
                    # numpy has no bfloat16: go through ml_dtypes via the raw slice API.
                    tensors[key] = _read_bf16(os.path.join(path, fname), key)
    for k, v in tensors.items():
        if v.dtype not in (np.float32, np.float64) and np.issubdtype(v.dtype, np.floating):
            tensors[k] = v.astype(np.float32)
        elif str(v.dtype) == "bfloat16":
            tensors[k] = v.astype(np.float32)
    return tensors


def _read_bf16(file: str, key: str) -> np.ndarray:

    with safe_open(file, framework="numpy") as f:
        meta = f.get_slice(key)
        shape = meta.get_shape()
    # Fall back to reading the raw bytes through the header.
    with open(file, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
        start, end = header[key]["data_offsets"]
        fh.seek(8 + n + start)
        raw = fh.read(end - start)
    return np.frombuffer(raw, dtype=ml_dtypes.bfloat16).reshape(shape).astype(np.float32)


class TensorSource:
    """A checkpoint's tensors, handed out by key with shape checks and bookkeeping of unused keys."""

    def __init__(self, tensors: Mapping[str, np.ndarray], origin: str):
        self._tensors = dict(tensors)
        self._used: set[str] = set()
        self.origin = origin

    def __contains__(self, key: str) -> bool:
        return key in self._tensors

    def keys(self) -> Iterable[str]:
        return self._tensors.keys()

    def take(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Returns tensor ``key``; raises ConversionError naming the key (and both shapes) if wrong."""
        if key not in self._tensors:
            near = sorted(k for k in self._tensors if k.split(".")[-1] == key.split(".")[-1])[:5]
            raise ConversionError(
                f"{self.origin}: missing tensor '{key}'"
                + (f" (keys with the same suffix: {near})" if near else "")
            )
        arr = self._tensors[key]
        if shape is not None and tuple(arr.shape) != tuple(shape):
            raise ConversionError(
                f"{self.origin}: tensor '{key}' has shape {tuple(arr.shape)}, expected {tuple(shape)} "
                "from config.json; the weights and the config disagree"
            )
        self._used.add(key)
        return arr

    def unused(self) -> list[str]:
        return sorted(set(self._tensors) - self._used)


def write_safetensors_dir(
    out_dir: str,
    config: dict,
    tensors: Mapping[str, np.ndarray],
    extra_files: Mapping[str, str] = (),
) -> None:
    """Writes config.json and model.safetensors (float32 contiguous arrays) to ``out_dir``."""

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in tensors.items()}
    save_file(arrays, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    for name, text in dict(extra_files).items():
        with open(os.path.join(out_dir, name), "w") as f:
            f.write(text)
