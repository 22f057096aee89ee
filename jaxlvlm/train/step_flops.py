"""FLOPs a train step really does when some weights are frozen (the count behind MFU).

``3 x forward`` assumes every weight trains: each matmul y = x W runs once forward, once for the
input gradient dx = dy W^T and once for the weight gradient dW = x^T dy. With frozen weights (their
gradients are stopped, so XLA drops that work) a matmul costs, walking the network bottom-up:

- forward: always;
- weight gradient: only when W trains;
- input gradient: only when something below it trains (a frozen layer above a trained connector
  still passes gradients down; the frozen vision tower below it does not);
- LoRA (x a) b: its forward, the gradients of a and b, the gradient through b (needed for a's), and
  through a only when something below trains.

Attention's score and value products have no weight: their backward (2 x forward) runs when anything
at or below the layer's q/k/v trains. Norms train no matmul but count as "something below trains".
Layers are visited per layer (layers_{i}) or as the scanned stack, whichever the params hold.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping

import jax
from flax import linen as nn

from jaxlvlm.models.config import LVLMConfig, TextConfig, VisionConfig
from jaxlvlm.train.flops import train_step_flops
from jaxlvlm.train.lora import projection_dims
from jaxlvlm.train.optimizer import FROZEN, param_labels, path_str
from jaxlvlm.train.setup import dummy_inputs


@dataclasses.dataclass(frozen=True)
class StepFlops:
    """FLOPs of one train step, split by kind, and the 3 x forward count for comparison."""

    forward: float
    input_grad: float
    weight_grad: float
    all_weights_3x: float

    @property
    def total(self) -> float:
        return self.forward + self.input_grad + self.weight_grad


@dataclasses.dataclass
class _Walk:
    """Accumulates a bottom-up walk; ``below`` = something already visited trains."""

    trained: Callable[[str], bool]
    lora: Mapping[str, int]  # LoRA target -> rank (trained factors)
    fwd: float = 0.0
    igrad: float = 0.0
    wgrad: float = 0.0
    below: bool = False

    def group(self, sites: list[tuple[str, float]], lora_sites: list[tuple[str, float, int, int]]):
        """Parallel matmuls that read the same input: sites (param regex, forward FLOPs) and LoRA
        sites (target, tokens, d_in, d_out)."""
        trains = False
        for regex, flops in sites:
            w = self.trained(regex)
            self.fwd += flops
            self.wgrad += flops if w else 0.0
            self.igrad += flops if self.below else 0.0
            trains |= w
        for target, tokens, d_in, d_out in lora_sites:
            rank = self.lora.get(target)
            if rank is None:
                continue
            fa, fb = 2 * tokens * d_in * rank, 2 * tokens * rank * d_out
            self.fwd += fa + fb
            self.wgrad += fa + fb
            self.igrad += fb + (fa if self.below else 0.0)
            trains = True
        self.below |= trains

    def attention(self, flops: float) -> None:
        self.fwd += flops
        self.igrad += 2 * flops if self.below else 0.0

    def touch(self, regex: str) -> None:
        """Parameters without matmuls (norms, embeddings): they only make ``below`` true."""
        self.below |= self.trained(regex)


def _layer(prefix: str, i: int, stacked: str | None) -> str:
    """Regex of layer i's params: 'layers_{i}/', or the whole stack when layers are scanned."""
    return f"^{prefix}/layers_{i}/" if stacked is None else f"^{prefix}/{stacked}"


def _walk_vision(w: _Walk, v: VisionConfig, images: float, scanned: bool) -> None:
    p, d, ff = v.num_positions, v.hidden_size, v.intermediate_size
    w.group(
        [("^vision/embeddings/patch", images * 2 * v.num_patches * v.patch_size**2 * 3 * d)], []
    )
    w.touch("^vision/(embeddings/|pre_layrnorm/)")
    for i in range(v.num_layers):
        lay = _layer("vision", i, "layers/layer/" if scanned else None)
        proj = images * 2 * p * d * d
        w.touch(lay + "layer_norm1/")
        w.group([(lay + f"self_attn/{n}_proj/", proj) for n in "qkv"], [])
        w.attention(images * 2 * 2 * p * p * d)
        w.group([(lay + "self_attn/out_proj/", proj)], [])
        w.touch(lay + "layer_norm2/")
        w.group([(lay + "mlp/fc1/", images * 2 * p * d * ff)], [])
        w.group([(lay + "mlp/fc2/", images * 2 * p * d * ff)], [])
    w.touch("^vision/post_layernorm/")


def _walk_connector(w: _Walk, cfg: LVLMConfig, images: float) -> None:
    t, dv, c = cfg.image_tokens_per_image, cfg.vision.hidden_size, cfg.text.hidden_size
    if cfg.connector == "linear":
        w.group([("^connector/", images * 2 * t * dv * c)], [])
        return
    # Other connectors are counted as LLaVA's two-layer MLP (as jaxlvlm.train.flops does).
    w.group([("^connector/(?!linear_2/)", images * 2 * t * dv * c)], [])
    w.group([("^connector/linear_2/", images * 2 * t * c * c)], [])


def _walk_text(w: _Walk, t: TextConfig, tokens: float, length: int, scanned: bool) -> None:
    w.touch("^llm/embed_tokens/")
    dims = {name: projection_dims(t, name) for name in ("q_proj", "k_proj", "v_proj", "o_proj")}
    dims.update({name: projection_dims(t, name) for name in ("gate_proj", "up_proj", "down_proj")})

    def sites(lay: str, group: str, names: list[str]):
        plain = [(lay + f"{group}/{n}/", tokens * 2 * dims[n][0] * dims[n][1]) for n in names]
        return plain, [(n, tokens, *dims[n]) for n in names]

    hd = t.resolved_head_dim
    for i in range(t.num_layers):
        lay = _layer("llm", i, "layers/" if scanned else None)
        w.touch(lay + "input_layernorm/")
        w.group(*sites(lay, "self_attn", ["q_proj", "k_proj", "v_proj"]))
        w.attention(tokens * 0.5 * 2 * 2 * length * t.num_heads * hd)  # causal: half the square
        w.group(*sites(lay, "self_attn", ["o_proj"]))
        w.touch(lay + "post_attention_layernorm/")
        w.group(*sites(lay, "mlp", ["gate_proj", "up_proj"]))
        w.group(*sites(lay, "mlp", ["down_proj"]))
    w.touch("^llm/norm/")
    head = "^llm/embed_tokens/" if t.tie_word_embeddings else "^llm/lm_head/"
    w.group([(head, tokens * 2 * t.hidden_size * t.vocab_size)], [])


def count_step_flops(
    cfg: LVLMConfig | TextConfig,
    batch_size: int,
    length: int,
    image_slots: int,
    trained_paths: list[str],
    lora: Mapping[str, int],
    scanned: bool,
) -> StepFlops:
    """FLOPs of one train step on a [batch_size, length] batch with ``image_slots`` images per row.

    trained_paths: parameter paths that train ('vision/...', 'connector/...', 'llm/...', as the
    optimizer's labels name them); lora: {target: rank} of trained LoRA factors; scanned: whether
    layers are stacked ('layers/...') instead of 'layers_{i}/...'.
    """

    def trained(regex: str) -> bool:
        r = re.compile(regex)
        return any(r.search(p) for p in trained_paths)

    w = _Walk(trained, dict(lora))
    tokens = float(batch_size * length)
    text = cfg.text if isinstance(cfg, LVLMConfig) else cfg
    if isinstance(cfg, LVLMConfig):
        images = float(batch_size * image_slots)
        _walk_vision(w, cfg.vision, images, scanned)
        _walk_connector(w, cfg, images)
    _walk_text(w, text, tokens, length, scanned)
    full = train_step_flops(cfg, batch_size, length, image_slots)
    return StepFlops(w.fwd, w.igrad, w.wgrad, full)


def trained_paths_of(labels) -> tuple[list[str], bool]:
    """(paths of the trained model params, whether layers are scanned) from the optimizer's labels
    tree over {'params', 'lora'}."""

    flat = jax.tree_util.tree_flatten_with_path(labels.get("params", {}))[0]
    paths = [(path_str(k), lab) for k, lab in flat]
    scanned = any(re.match(r"^(llm|vision)/layers/", p) for p, _ in paths)
    return [p for p, lab in paths if lab != FROZEN], scanned


def log_step_flops(flops: StepFlops) -> None:
    """Says in the log which FLOP count MFU uses, and the 3 x forward count it replaces."""
    logging.info(
        "MFU counts the work this step does with its frozen weights: %.4g FLOPs per step "
        "(forward %.4g + input gradients %.4g + weight gradients %.4g); counting 3 x forward for "
        "every weight would say %.4g (%.2fx)",
        flops.total,
        flops.forward,
        flops.input_grad,
        flops.weight_grad,
        flops.all_weights_3x,
        flops.all_weights_3x / max(flops.total, 1.0),
    )


def run_step_flops(model, cfg, config, batch_size: int, length: int, image_slots: int) -> float:
    """The FLOPs per step MFU uses for a run of ``config`` (optim.freeze, optim.lr_groups, lora),
    logged with the 3 x forward count it replaces. Parameters are traced abstractly (no memory)."""

    inputs = dummy_inputs(cfg)
    boxed = jax.eval_shape(lambda r: model.init(r, **inputs), jax.random.PRNGKey(0))["params"]
    lr_groups = [(str(p), float(v)) for p, v in config.optim.lr_groups]
    labels = param_labels({"params": nn.meta.unbox(boxed)}, list(config.optim.freeze), lr_groups)
    paths, scanned = trained_paths_of(labels)
    lora = {}
    if config.lora.enabled:
        lora = {t: int(config.lora.rank) for t in config.lora.targets}
    flops = count_step_flops(cfg, batch_size, length, image_slots, paths, lora, scanned)
    log_step_flops(flops)
    return flops.total
