"""Device mesh, logical-axis rules and helpers that shard parameters and batches.

Every parameter carries logical axis names (``nn.with_logical_partitioning``); one rules table maps
them to the mesh axes ('data', 'fsdp', 'tensor'). Batches are sharded over ('data', 'fsdp').
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from flax import linen as nn
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Logical axis -> mesh axis (or None = replicated). Weights are sharded over 'fsdp' on their
# embedding-like dimension and over 'tensor' on heads / mlp / vocab (Megatron-style).
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", BATCH_AXES),
    ("length", None),
    ("embed", "fsdp"),
    ("vit_embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("vit_mlp", "tensor"),
    ("vocab", "tensor"),
    ("layers", None),
    ("norm", None),
    ("patch", None),
    ("channels", None),
    ("positions", None),
    ("lowrank", None),
    ("pool", None),
    ("experts", None),
    ("adapter", None),
)


def make_mesh(shape: Sequence[int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds a ('data', 'fsdp', 'tensor') mesh; one entry of ``shape`` may be -1 (fill the rest).

    Built from ``Mesh`` directly (Auto axis types) so with_sharding_constraint works on jax 0.10.
    """
    devices = list(devices if devices is not None else jax.devices())
    shape = list(shape)
    if len(shape) != 3:
        raise ValueError(f"mesh shape must have 3 entries (data, fsdp, tensor), got {shape}")
    if shape.count(-1) > 1:
        raise ValueError(f"mesh shape {shape}: at most one entry may be -1")
    known = int(np.prod([s for s in shape if s != -1]))
    if -1 in shape:
        if len(devices) % known:
            raise ValueError(f"mesh shape {shape} does not divide {len(devices)} devices")
        shape[shape.index(-1)] = len(devices) // known
    if int(np.prod(shape)) != len(devices):
        raise ValueError(
            f"mesh shape {shape} needs {int(np.prod(shape))} devices, have {len(devices)}"
        )
    try:
        grid = mesh_utils.create_device_mesh(shape, devices=devices)
    except Exception:  # noqa: BLE001 - fall back to plain order on unusual topologies
        grid = np.asarray(devices).reshape(shape)
    return Mesh(grid, MESH_AXES)


@contextlib.contextmanager
def mesh_context(mesh: Mesh, rules=DEFAULT_RULES) -> Iterator[None]:
    """The context every jitted function of sharded model code traces and runs under.

    ``jax.set_mesh(mesh)`` makes the mesh the abstract mesh flax's ``nn.with_logical_constraint``
    reads, and ``rules`` map the logical names to its axes, so the activation constraints of the
    models apply. (The legacy ``with mesh:`` leaves the abstract mesh empty in jax >= 0.10: every
    activation constraint then silently does nothing and XLA propagates the weights' split into
    the activations.)

    Entered again for the same mesh (a jitted function called while an outer jit is traced under
    this context, as tools.aot lowers the trainer's step) it only sets the rules: ``set_mesh``
    refuses to run under a trace, and the mesh is already the one in force.
    """
    with contextlib.ExitStack() as stack:
        if jax.sharding.get_abstract_mesh() != mesh.abstract_mesh:
            stack.enter_context(jax.set_mesh(mesh))
        stack.enter_context(nn.logical_axis_rules(list(rules)))
        yield


def rules_from_config(rules) -> tuple[tuple[str, str | tuple[str, ...] | None], ...]:
    """Normalises a rules table from a config (list of [logical, mesh] pairs) to tuples."""
    if rules is None:
        return DEFAULT_RULES
    out = []
    for logical, mesh_axis in rules:
        if isinstance(mesh_axis, list):
            mesh_axis = tuple(mesh_axis)
        out.append((logical, mesh_axis))
    return tuple(out)


def logical_to_sharding(logical_specs, mesh: Mesh, rules=DEFAULT_RULES):
    """Maps a pytree of logical PartitionSpecs to NamedShardings on ``mesh``."""
    return nn.logical_to_mesh_sharding(logical_specs, mesh, list(rules))


def params_sharding(abstract_boxed_params, mesh: Mesh, rules=DEFAULT_RULES):
    """NamedShardings for a (boxed, abstract) parameter tree as returned by eval_shape(init)."""
    specs = nn.get_partition_spec(abstract_boxed_params)
    return logical_to_sharding(specs, mesh, rules)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Sharding of a batch array of rank ``ndim``: leading dim over ('data', 'fsdp')."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def sharded_fraction(params) -> float:
    """Fraction of parameter bytes whose sharding splits them over more than one device."""
    total = 0
    split = 0
    for leaf in jax.tree_util.tree_leaves(params):
        nbytes = leaf.size * leaf.dtype.itemsize
        total += nbytes
        sharding = getattr(leaf, "sharding", None)
        if sharding is not None and not sharding.is_fully_replicated:
            split += nbytes
    return split / max(total, 1)


def opt_state_shardings(abstract_opt_state: Any, trainable_shardings: Any, mesh: Mesh) -> Any:
    """Each optimizer-state leaf takes the sharding of the parameter whose path ends its own path
    (Adam's mu/nu mirror the parameter tree); counters and the like are replicated."""
    by_path = {
        tuple(path): s for path, s in jax.tree_util.tree_flatten_with_path(trainable_shardings)[0]
    }
    rep = replicated(mesh)

    def pick(path, leaf):
        path = tuple(path)
        for start in range(len(path)):
            hit = by_path.get(path[start:])
            if hit is not None:
                return hit
        return rep

    return jax.tree_util.tree_map_with_path(pick, abstract_opt_state)


def replicated_like(tree: Any, mesh: Mesh) -> Any:
    rep = replicated(mesh)
    return jax.tree_util.tree_map(lambda _: rep, tree)


def abstract_like(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs of ``tree`` carrying ``shardings``: what a restore or an AOT lowering
    needs to place arrays right without materialising them."""
    return jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )
