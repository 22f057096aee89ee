"""Fixtures of the Flower federation tests."""

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

from jaxlvlm.federated.flower.compile_cache import use_compilation_cache

_CACHE_KEYS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


@pytest.fixture
def shared_cache(tmp_path):
    """One persistent compilation cache for this process's reference runs and every Flower process
    of the test: what one of them compiled, the others load instead of compiling it again."""
    before = {n: getattr(jax.config, n) for n in _CACHE_KEYS}
    directory = str(tmp_path / "jax_cache")
    use_compilation_cache(directory)
    compilation_cache.reset_cache()  # this process may have decided on 'no cache' already
    yield directory
    for n, v in before.items():
        jax.config.update(n, v)
    compilation_cache.reset_cache()
