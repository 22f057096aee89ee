"""Connector registry and LLaVA's mlp2x_gelu projector against transformers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen as nn
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

from jaxlvlm.models.connector import CONNECTORS, make_connector, register_connector


@pytest.mark.parametrize("bias", [True, False])
def test_mlp2x_gelu_matches_llava_projector(bias):
    torch.manual_seed(0)
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=48),
        text_config=LlamaConfig(hidden_size=32),
        multimodal_projector_bias=bias,
    )
    proj = LlavaMultiModalProjector(cfg).eval()
    x = np.random.default_rng(0).standard_normal((3, 5, 48)).astype(np.float32)
    with torch.no_grad():
        want = proj(torch.from_numpy(x)).numpy()
    params = {}
    for name in ("linear_1", "linear_2"):
        layer = getattr(proj, name)
        params[name] = {"kernel": layer.weight.detach().numpy().T}
        if bias:
            params[name]["bias"] = layer.bias.detach().numpy()
    conn = make_connector("mlp2x_gelu", 48, 32, bias=bias)
    got = conn.apply({"params": params}, x)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=0)


def test_linear_connector_shapes_and_axes():
    conn = make_connector("linear", 48, 32)
    variables = conn.init(jax.random.key(0), jnp.zeros((2, 4, 48)))
    specs = nn.get_partition_spec(variables)["params"]["linear"]
    assert tuple(specs["kernel"]) == ("vit_embed", "embed")
    out = conn.apply(nn.unbox(variables), jnp.ones((2, 4, 48)))
    assert out.shape == (2, 4, 32)


def test_registry_adds_custom_connector_with_kwargs():
    @register_connector("test_scaled_linear")
    class Scaled(nn.Module):
        in_dim: int
        out_dim: int
        bias: bool = True
        dtype: object = jnp.float32
        param_dtype: object = jnp.float32
        scale: float = 1.0

        @nn.compact
        def __call__(self, features, deterministic=True):
            return self.scale * nn.Dense(self.out_dim, use_bias=self.bias)(features)

    try:
        conn = make_connector("test_scaled_linear", 8, 4, scale=2.0)
        assert conn.scale == 2.0
        with pytest.raises(TypeError, match=r"no fields \['alpha'\]"):
            make_connector("test_scaled_linear", 8, 4, alpha=2.0)
        with pytest.raises(ValueError, match="already registered"):
            register_connector("test_scaled_linear")(type("Other", (Scaled,), {}))
    finally:
        CONNECTORS.pop("test_scaled_linear")


def test_unknown_connector_names_the_registered_ones():
    with pytest.raises(KeyError, match="mlp2x_gelu"):
        make_connector("qformer", 8, 4)


def test_connector_needs_the_contract_fields():
    with pytest.raises(TypeError, match="lacks fields"):

        @register_connector("test_incomplete")
        class Incomplete(nn.Module):
            in_dim: int

            def __call__(self, x):
                return x


def test_method_connectors_load_without_importing_the_method_first():
    """A config naming Pilot's connector builds in a fresh interpreter that never imported
    jaxlvlm.methods (e.g. an eval job reading a saved Pilot model)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from jaxlvlm.models.connector import make_connector\n"
        "assert 'jaxlvlm.methods.pilot' not in sys.modules\n"
        "m = make_connector('pilot_stage1', 8, 16)\n"
        "print(type(m).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip(), out.stderr
