"""Two-body Jastrow ansatz."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class Jastrow(nn.Module):
    """log psi(sigma) = sum_{i <= j} W_ij sigma_i sigma_j (upper-triangular W).

    Equivalently ``sigma^T W_s sigma`` with the symmetric ``W_s = (W + W^T) / 2`` off
    the diagonal. The parameter ``kernel`` holds the ``n_sites (n_sites + 1) / 2``
    entries of ``W`` in ``numpy.triu_indices(n_sites)`` order (only the
    ``n_sites (n_sites - 1) / 2`` strictly-upper ones if ``use_diagonal`` is False;
    for spin-1/2 the diagonal only adds a constant). Initialised from a normal
    distribution of standard deviation ``kernel_scale``.

    Attributes:
        param_dtype: float64 or complex128.
        dtype: compute dtype; None means ``param_dtype``.
        use_diagonal: include the on-site terms ``W_ii sigma_i^2``.
        kernel_scale: standard deviation of the initial parameters.
    """

    param_dtype: Any = jnp.float64
    dtype: Any = None
    use_diagonal: bool = True
    kernel_scale: float = 0.01

    @nn.compact
    def __call__(self, sigma: jax.Array) -> jax.Array:
        """Log-amplitudes.

        Args:
            sigma: (..., n_sites) int8 configurations.
        Returns:
            (...) log psi, dtype ``dtype`` (float64 or complex128 by default).
        """
        dtype = self.param_dtype if self.dtype is None else self.dtype
        n_sites = sigma.shape[-1]
        rows, cols = np.triu_indices(n_sites, k=0 if self.use_diagonal else 1)
        kernel = self.param(
            "kernel",
            nn.initializers.normal(self.kernel_scale),
            (rows.size,),
            self.param_dtype,
        )
        w = jnp.zeros((n_sites, n_sites), dtype)
        w = w.at[rows, cols].set(jnp.asarray(kernel, dtype))
        x = jnp.asarray(sigma, dtype)
        return jnp.sum((x @ w) * x, axis=-1)
