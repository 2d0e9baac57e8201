"""Restricted Boltzmann machine with the hidden units traced out.

log psi(sigma) = a . sigma + sum_j log cosh(b_j + W_j . sigma)
(G. Carleo and M. Troyer, Science 355, 602 (2017)); the constant ``n_hidden * log 2``
of ``log prod_j 2 cosh`` is dropped.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_LOG2 = float(np.log(2.0))
# Hidden units whose factors 1 + exp(-2w) (modulus <= 2) are multiplied before one log:
# 2^64 cannot overflow, and underflow needs an average factor below 1e-5.
PRODUCT_GROUP = 64
# Batches (rows) up to which sum_log_cosh multiplies factors; larger ones take one log
# per unit (see sum_log_cosh).
PRODUCT_MAX_ROWS = 4096


def log_cosh(x: jax.Array) -> jax.Array:
    """log cosh(x), safe from overflow for real and complex x.

    With w = ±x chosen so that Re w >= 0 (cosh is even), log cosh x = w +
    log(1 + exp(-2w)) - log 2, where |exp(-2w)| <= 1. The imaginary part is defined
    modulo 2 pi. ``log(1 + u)`` rather than ``log1p(u)``: the absolute error is the
    same (~1e-16, u <= 1 in modulus) and it is cheaper on CPU. A sum over hidden
    units is cheaper still with :func:`sum_log_cosh`.

    Args:
        x: (...) float or complex array.
    Returns:
        (...) array of the same dtype.
    """
    w = _positive_branch(x)
    return w + jnp.log(1.0 + jnp.exp(-2.0 * w)) - _LOG2


def _positive_branch(x: jax.Array) -> jax.Array:
    """w = ±x with Re w >= 0 (cosh is even)."""
    if jnp.iscomplexobj(x):
        return jnp.where(x.real < 0, -x, x)
    return jnp.abs(x)


@jax.custom_jvp
def sum_log_cosh(x: jax.Array) -> jax.Array:
    """sum_j log cosh(x_j) over the last axis; few logs for small batches.

    With w = ±x_j, Re w >= 0: sum_j log cosh x_j = sum_j w_j - n log 2
    + log prod_j (1 + exp(-2 w_j)). Each factor has modulus at most 2, so products
    of ``PRODUCT_GROUP`` factors cannot overflow. On a small batch (at most
    ``PRODUCT_MAX_ROWS`` rows: a Metropolis move over the chains) the per-unit
    ``log`` dominates on CPU and the products make an RBM evaluation about 3x
    cheaper. A large batch (local energies) takes :func:`log_cosh` per unit, one
    fused pass over x, where the product form needs two reductions that XLA's CPU
    backend does not fuse (it materialises |x|: measured 20% slower for a whole
    Heisenberg VMC step). Both agree to a few ulp of the result's scale (~1e-14).
    The derivative is sum_j tanh(x_j) dx_j (holomorphic for complex x); the
    imaginary part is defined modulo 2 pi.

    Args:
        x: (..., n) float or complex array.
    Returns:
        (...) array of the same dtype.
    """
    n = x.shape[-1]
    if math.prod(x.shape[:-1]) > PRODUCT_MAX_ROWS:
        return jnp.sum(log_cosh(x), axis=-1)
    w = _positive_branch(x)
    factors = 1.0 + jnp.exp(-2.0 * w)
    n_groups = -(-n // PRODUCT_GROUP)
    pad = n_groups * PRODUCT_GROUP - n
    if pad and n_groups > 1:
        ones = jnp.ones(factors.shape[:-1] + (pad,), factors.dtype)
        factors = jnp.concatenate([factors, ones], axis=-1)
    if n_groups > 1:
        factors = factors.reshape(factors.shape[:-1] + (n_groups, PRODUCT_GROUP))
        log_prod = jnp.sum(jnp.log(jnp.prod(factors, axis=-1)), axis=-1)
    else:
        log_prod = jnp.log(jnp.prod(factors, axis=-1))
    return jnp.sum(w, axis=-1) + log_prod - n * _LOG2


@sum_log_cosh.defjvp
def _sum_log_cosh_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return sum_log_cosh(x), jnp.sum(jnp.tanh(x) * dx, axis=-1)


def n_hidden_units(alpha: float, n_sites: int) -> int:
    """Number of hidden units ``round(alpha * n_sites)``; raises if it is below 1."""
    n = int(round(alpha * n_sites))
    if n < 1:
        raise ValueError(f"alpha={alpha} gives {n} hidden units on {n_sites} sites")
    return n


class RBM(nn.Module):
    """RBM: log psi = a.sigma + sum_j log cosh(b_j + W_j.sigma).

    Parameters (``n_hidden = round(alpha * n_sites)``): ``kernel`` (n_sites, n_hidden),
    ``hidden_bias`` (n_hidden,), ``visible_bias`` (n_sites,); all initialised from a
    normal distribution of standard deviation ``kernel_scale`` (complex normal for a
    complex ``param_dtype``), so a fresh RBM is close to the uniform state.

    The model provides :meth:`log_derivative_gram`, so SR in the kernel (minSR) form
    never forms the per-sample Jacobian (see ``nqs.sr``).

    Attributes:
        alpha: hidden-unit density.
        use_visible_bias: include ``a``.
        use_hidden_bias: include ``b``.
        param_dtype: storage dtype, float64 (real amplitudes) or complex128.
        dtype: compute dtype; None means ``param_dtype``.
        kernel_scale: standard deviation of the initial parameters.
    """

    alpha: float = 1.0
    use_visible_bias: bool = True
    use_hidden_bias: bool = True
    param_dtype: Any = jnp.float64
    dtype: Any = None
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
        n_hidden = n_hidden_units(self.alpha, n_sites)
        init = nn.initializers.normal(self.kernel_scale)
        x = jnp.asarray(sigma, dtype)
        kernel = self.param("kernel", init, (n_sites, n_hidden), self.param_dtype)
        theta = x @ jnp.asarray(kernel, dtype)
        if self.use_hidden_bias:
            b = self.param("hidden_bias", init, (n_hidden,), self.param_dtype)
            theta = theta + jnp.asarray(b, dtype)
        log_psi = sum_log_cosh(theta)
        if self.use_visible_bias:
            a = self.param("visible_bias", init, (n_sites,), self.param_dtype)
            log_psi = log_psi + x @ jnp.asarray(a, dtype)
        return log_psi

    def log_derivative_gram(self, variables, sigma: jax.Array) -> jax.Array:
        """Gram matrix of the per-sample log-derivatives, without the Jacobian.

        With O(σ) = ∂ log ψ(σ) / ∂w = (σ, t, σ ⊗ t) for (visible_bias, hidden_bias,
        kernel) and t = tanh(b + Wᵀσ), G_ab = Σ_k O_k(σ_a) conj(O_k(σ_b)) =
        A_ab + B_ab + A_ab B_ab with A = σσᵀ and B = t t†: O(n² (n_sites +
        n_hidden)) work instead of O(n² n_sites n_hidden). The derivative is the
        complex one for complex parameters (log ψ is holomorphic in them).

        Args:
            variables: ``{"params": ...}`` as for ``apply``.
            sigma: (n, n_sites) int8 configurations.
        Returns:
            (n, n) float64 (real parameters) or complex128 Hermitian matrix.
        """
        p = variables["params"]
        dtype = self.param_dtype if self.dtype is None else self.dtype
        x = jnp.asarray(sigma, dtype)
        theta = x @ jnp.asarray(p["kernel"], dtype)
        if self.use_hidden_bias:
            theta = theta + jnp.asarray(p["hidden_bias"], dtype)
        t = jnp.tanh(theta)
        a = x @ x.T
        b = t @ t.conj().T
        gram = a * b
        if self.use_hidden_bias:
            gram = gram + b
        if self.use_visible_bias:
            gram = gram + a
        return gram
