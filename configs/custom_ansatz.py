"""Example custom ansatz: an RBM for the modulus and an RBM for the phase.

Copy this file, change the network, and point a config at the class:

    [model]
    kind = "configs/custom_ansatz.py:ModulusPhaseRBM"   # path relative to where you run
    alpha = 1                                            # any field below, by name
    param_dtype = "float64"

The contract: a ``flax.linen.Module`` whose ``__call__`` maps int8 configurations of
shape ``(batch, n_sites)`` (spin-1/2 entries are +1/-1) to log-amplitudes of shape
``(batch,)``, real or complex. Write it for any leading batch shape ``(..., n_sites)``
(operate on the last axis) and keep the initial log-amplitudes of order 1. Fields become
the keyword arguments of the ``[model]`` table; ``param_dtype`` strings such as
"float64" or "complex128" are converted to JAX dtypes; a field named ``hilbert``
receives the Hilbert space.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def _log_cosh(x):
    # log cosh x = logaddexp(x, -x) - log 2, without overflow for large |x|
    return jnp.logaddexp(x, -x) - jnp.log(2.0)


class ModulusPhaseRBM(nn.Module):
    """log psi = sum_j log cosh(W_j.sigma + b_j) + i sum_k log cosh(V_k.sigma + c_k).

    Both networks have real parameters and ``round(alpha * n_sites)`` hidden units, so
    the ansatz can carry a sign structure while staying real-parametrised.
    """

    alpha: float = 1.0
    param_dtype: Any = jnp.float64
    init_scale: float = 0.01

    @nn.compact
    def __call__(self, sigma: jax.Array) -> jax.Array:
        x = sigma.astype(self.param_dtype)
        n_hidden = max(1, round(self.alpha * x.shape[-1]))
        init = nn.initializers.normal(self.init_scale)

        def rbm(name):
            dense = nn.Dense(
                n_hidden,
                param_dtype=self.param_dtype,
                kernel_init=init,
                bias_init=init,
                name=name,
            )
            return jnp.sum(_log_cosh(dense(x)), axis=-1)

        return jax.lax.complex(rbm("modulus"), rbm("phase"))
