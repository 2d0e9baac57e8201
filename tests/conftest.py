"""Test configuration: double precision, as the CLI sets it for every run."""

import gc

import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after each test module: one process runs the
    whole suite, and thousands of live executables (each with its own code mappings)
    are what a long run accumulates for nothing."""
    yield
    jax.clear_caches()
    gc.collect()
