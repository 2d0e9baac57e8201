"""nqs: neural-network quantum states with variational Monte Carlo on JAX.

Importing nqs enables JAX's 64-bit mode (``jax_enable_x64``): the SR and TDVP linear
systems need double precision. Set ``NQS_NO_X64=1`` before the import to keep JAX's
32-bit default (then pass float64 nowhere).
"""

import os as _os

import jax as _jax

if not _os.environ.get("NQS_NO_X64"):
    _jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
