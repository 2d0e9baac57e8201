"""One free log-amplitude per basis state: every state of a tiny space."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class LogStateVector(nn.Module):
    """log psi(sigma) = theta[index(sigma)], index = ``hilbert.states_to_indices``.

    Configurations outside the (constrained) basis get log psi = -inf (psi = 0).
    ``theta`` has shape ``(hilbert.n_states,)``; it starts at zero (the uniform state)
    or, with ``init_scale > 0``, normal with that standard deviation.

    Attributes:
        hilbert: the Hilbert space (a frozen dataclass, hashable).
        param_dtype: float64 or complex128.
        init_scale: standard deviation of the initial ``theta`` (0: uniform state).
    """

    hilbert: Any
    param_dtype: Any = jnp.float64
    init_scale: float = 0.0

    @nn.compact
    def __call__(self, sigma: jax.Array) -> jax.Array:
        """Log-amplitudes.

        Args:
            sigma: (..., n_sites) int8 configurations of ``hilbert``.
        Returns:
            (...) log psi, dtype ``param_dtype``.
        """
        if self.init_scale > 0:
            init = nn.initializers.normal(self.init_scale)
        else:
            init = nn.initializers.zeros
        theta = self.param("theta", init, (self.hilbert.n_states,), self.param_dtype)
        idx = self.hilbert.states_to_indices(jnp.asarray(sigma))
        inside = idx >= 0
        log_psi = theta[jnp.where(inside, idx, 0)]
        return jnp.where(inside, log_psi, -jnp.inf)
