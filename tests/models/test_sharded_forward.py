"""On 8 CPU devices: parameters born sharded over a (2, 2, 2) mesh, almost every byte split, and the
sharded forward (with the logical activation constraints active) equal to the unsharded one."""

import jax
import numpy as np
import pytest

from jaxlvlm.models import build_model
from jaxlvlm.models.config import LVLMConfig, TextConfig, VisionConfig
from jaxlvlm.models.sharded_init import init_params_sharded, param_shardings, place_params
from jaxlvlm.sharding import (
    DEFAULT_RULES,
    batch_sharding,
    make_mesh,
    mesh_context,
    sharded_fraction,
)

# Every sharded dimension divides the mesh axes it maps to (2 each).
CONFIG = LVLMConfig(
    vision=VisionConfig(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4),
    text=TextConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
    ),
    image_token_id=3,
)


def _batch():
    rng = np.random.default_rng(0)
    t = CONFIG.image_tokens_per_image
    ids = rng.integers(4, 256, size=(4, 40)).astype(np.int32)
    ids[0, 2 : 2 + t] = 3
    ids[2, 5 : 5 + 2 * t] = 3
    mask = np.ones((4, 40), np.int32)
    mask[1, 30:] = 0
    pixels = rng.standard_normal((4, 2, 32, 32, 3)).astype(np.float32)
    return ids, mask, pixels, np.array([1, 0, 2, 0], np.int32)


@pytest.fixture(scope="module")
def sharded():
    mesh = make_mesh((2, 2, 2))
    model = build_model(CONFIG)
    return mesh, model, init_params_sharded(model, CONFIG, jax.random.key(0), mesh)


def test_sharded_init_and_forward_match_unsharded(sharded):
    assert jax.device_count() == 8
    mesh, model, params = sharded

    assert sharded_fraction(params) > 0.9
    embed = params["llm"]["embed_tokens"]["embedding"]
    assert embed.sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")
    q = params["vision"]["layers_0"]["self_attn"]["q_proj"]["kernel"]
    assert len(q.addressable_shards) == 8 and q.addressable_shards[0].data.shape == (32, 2, 16)

    ids, mask, pixels, num_images = _batch()
    host_params = jax.device_get(params)
    forward = lambda p, *a: model.apply({"params": p}, *a)
    want = jax.jit(forward)(host_params, ids, mask, pixels, num_images)

    inputs = [
        jax.device_put(x, batch_sharding(mesh, x.ndim)) for x in (ids, mask, pixels, num_images)
    ]
    with mesh_context(mesh, DEFAULT_RULES):
        got = jax.jit(forward)(params, *inputs)
    assert not got.sharding.is_fully_replicated
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=0)


def test_host_params_placed_with_the_same_shardings(sharded):
    mesh, model, params = sharded
    shardings = param_shardings(model, CONFIG, mesh)
    host = jax.device_get(params)
    placed = place_params(host, shardings)
    assert sharded_fraction(placed) > 0.9
    leaves, specs = jax.tree.leaves(placed), jax.tree.leaves(shardings)
    assert len(leaves) == len(specs)
    for array, sharding in zip(leaves, specs, strict=True):
        assert array.sharding == sharding


def _constraints(lowered) -> int:
    """Sharding constraints in a lowered program (Shardy's op, or GSPMD's custom call)."""
    text = lowered.as_text()
    return text.count("sdy.sharding_constraint") + text.count("@Sharding")


def test_activation_constraints_reach_the_program_under_mesh_context(sharded):
    """mesh_context (jax.set_mesh + rules) lets the models' nn.with_logical_constraint calls into
    the program: one per decoder layer, the merged embeddings and the ViT's input at least (the
    ViT's layers past the feature layer are not run). A bare
    ``with mesh:`` drops them all in jax >= 0.10 (flax reads the abstract mesh it leaves empty)."""
    mesh, model, params = sharded
    ids, mask, pixels, num_images = _batch()
    forward = jax.jit(lambda p, *a: model.apply({"params": p}, *a))
    with mesh_context(mesh, DEFAULT_RULES):
        applied = _constraints(forward.lower(params, ids, mask, pixels, num_images))
    assert applied >= CONFIG.text.num_layers + 2
    # Entered again inside a trace under the same mesh (tools.aot lowers the trainer's step so),
    # the context only re-applies the rules instead of failing in jax.set_mesh.
    with mesh_context(mesh, DEFAULT_RULES):
        nested = jax.jit(lambda p, *a: _nested_forward(model, mesh, p, *a))
        assert _constraints(nested.lower(params, ids, mask, pixels, num_images)) == applied


def _nested_forward(model, mesh, params, *args):
    with mesh_context(mesh, DEFAULT_RULES):
        return model.apply({"params": params}, *args)
