"""Test configuration: double precision, as the CLI sets it for every run."""

import jax

jax.config.update("jax_enable_x64", True)
