"""Fixtures for run directories on object storage: one GCS emulator per session, a bucket per test."""

import itertools

import pytest
from gcs_emulator import apply_in_process, create_bucket, emulator_env, running_emulator

_names = itertools.count()


@pytest.fixture(scope="session")
def gcs_emulator():
    """(url, env) of an in-memory GCS emulator; this process is pointed at it."""
    with running_emulator() as url:
        env = emulator_env(url)
        apply_in_process(env)
        yield url, env


@pytest.fixture
def bucket(gcs_emulator) -> str:
    """gs://<a fresh bucket> (no trailing slash)."""
    url, _ = gcs_emulator
    name = f"jaxlvlm-test-{next(_names)}"
    create_bucket(url, name)
    return f"gs://{name}"
