"""One AOT compile's setting: the run's config, model and mesh over a TPU topology's devices."""

from __future__ import annotations

import dataclasses
from typing import Any

from flax import linen as nn
from jax.sharding import Mesh

from jaxlvlm import sharding as shd
from jaxlvlm.models.config import config_from_dict
from jaxlvlm.train import setup as S
from tools.aot.abstract import BatchShape, check_batch_divides
from tools.aot.chips import Topology
from tools.aot.devices import topology_devices


@dataclasses.dataclass
class AotContext:
    """What every program lowering needs: config, model config and module, mesh, rules, batch."""

    config: Any
    topology: Topology
    model_cfg: Any
    model: nn.Module
    mesh: Mesh
    rules: tuple
    batch: BatchShape


def _model_config(config, kind: str):
    """The model config; the tokenizer is loaded only when the config defers vocab / image id to
    it (the built-in recipes do; the paper-scale recipes set both). kind 'text': config.model.text
    alone (a CausalLM)."""
    if kind == "text":
        return config_from_dict({"kind": "text", **config.model.text})
    text_vocab = config.model.text.get("vocab_size", 0)
    if text_vocab > 0 and config.model.image_token_id >= 0:
        return S.model_config_from(config)
    from jaxlvlm.data.tokenizer import load_tokenizer

    return S.model_config_from(config, load_tokenizer(config.tokenizer))


def make_context(config, topology: Topology, kind: str = "lvlm") -> AotContext:
    """Builds the model (no parameters) and the config's mesh over ``topology``'s devices.
    kind: 'lvlm' (config.model) or 'text' (config.model.text only)."""
    model_cfg = _model_config(config, kind)
    model = S.build(model_cfg, S.runtime_from(config))
    mesh = shd.make_mesh(tuple(config.mesh.shape), topology_devices(topology))
    rules = shd.rules_from_config(list(config.mesh.rules) or None)
    batch = BatchShape.from_config(config, model_cfg)
    check_batch_divides(batch, mesh)
    return AotContext(config, topology, model_cfg, model, mesh, rules, batch)
