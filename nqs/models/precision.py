"""A model evaluated in single precision with double-precision parameters.

GPUs evaluate networks 2-64x faster in float32 than in float64, while stochastic
reconfiguration needs double precision: S is a covariance of ~n_samples rows, and
its small eigenvalues, which set the update, are lost in float32. :class:`ComputeDtype`
keeps the parameters (what the optimizer, SR and the checkpoints see) in float64 or
complex128 and evaluates the wrapped module on parameters cast to float32 or
complex64; log psi comes back as float64 or complex128, so local energies,
statistics and SR are accumulated in double precision. Gradients flow through the
casts (the cast's transpose casts back), so the Jacobian rows are float32-accurate
values stored in float64.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

#: Compute dtype -> the dtypes the parameters (real, complex) are cast to.
_CASTS = {
    "float32": (jnp.float32, jnp.complex64),
    "float64": (jnp.float64, jnp.complex128),
}


@dataclasses.dataclass(frozen=True)
class ComputeDtype:
    """``module`` with its parameters cast to ``dtype`` when evaluated.

    Attributes:
        module: Flax module; apply maps (b, n_sites) int8 to (b,) log psi.
        dtype: "float32" (the only useful choice; "float64" is the identity).
    """

    module: Any
    dtype: str = "float32"

    def __post_init__(self):
        if self.dtype not in _CASTS:
            raise ValueError(
                f"dtype must be one of {tuple(_CASTS)}, got {self.dtype!r}"
            )

    def init(self, key: jax.Array, sigma: jax.Array) -> Any:
        """The wrapped module's variables, in their own (double) precision."""
        return self.module.init(key, sigma)

    def apply(self, variables: Any, sigma: jax.Array) -> jax.Array:
        """log psi (b,) float64 or complex128, computed in ``dtype``."""
        real, cplx = _CASTS[self.dtype]

        def cast(x):
            if jnp.iscomplexobj(x):
                return x.astype(cplx)
            if jnp.issubdtype(x.dtype, jnp.floating):
                return x.astype(real)
            return x

        out = self.module.apply(jax.tree_util.tree_map(cast, variables), sigma)
        wide = jnp.complex128 if jnp.iscomplexobj(out) else jnp.float64
        return out.astype(wide)
