"""Restricted Boltzmann machine with the hidden units traced out.

log psi(sigma) = a . sigma + sum_j log cosh(b_j + W_j . sigma)
(G. Carleo and M. Troyer, Science 355, 602 (2017)); the constant ``n_hidden * log 2``
of ``log prod_j 2 cosh`` is dropped.

Complex parameters are evaluated in real arithmetic: theta = x + iy comes from one
real matrix product with [Re W, Im W] (XLA's CPU complex128 products are ~10x
slower than real ones), and log cosh from exp(-2|x|) and :func:`cos_sin` of y
(XLA's float64 sin and cos are ~20x slower than exp), with one complex log per
``PRODUCT_GROUP`` hidden units (:func:`sum_log_cosh_parts`).
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
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


def _leading_bits(x: Decimal, bits: int) -> float:
    """x truncated to its ``bits`` leading significant bits (exact in float64)."""
    mantissa, exponent = math.frexp(float(x))
    return math.ldexp(math.floor(mantissa * 2.0**bits) / 2.0**bits, exponent)


def _split_pi_half() -> tuple[float, float, float]:
    """Cody-Waite split pi/2 = P1 + P2 + P3 (to ~1e-37): P1 and P2 have 33
    significant bits, so k * P1 and k * P2 are exact for integers |k| < 2^20."""
    with localcontext() as ctx:
        ctx.prec = 60
        pi = Decimal("3.14159265358979323846264338327950288419716939937510582097494")
        p1 = _leading_bits(pi / 2, 33)
        p2 = _leading_bits(pi / 2 - Decimal(p1), 33)
        return p1, p2, float(pi / 2 - Decimal(p1) - Decimal(p2))


_PIO2_1, _PIO2_2, _PIO2_3 = _split_pi_half()
# Taylor coefficients of sin r (r^3 .. r^15) and cos r (r^4 .. r^16); on |r| <= 0.8
# the first omitted terms are below 6e-17 and 3e-18.
_SIN_TAYLOR = tuple((-1) ** k / math.factorial(2 * k + 1) for k in range(1, 8))
_COS_TAYLOR = tuple((-1) ** k / math.factorial(2 * k) for k in range(2, 9))


def _horner(z: jax.Array, coefficients: tuple[float, ...]) -> jax.Array:
    """sum_k coefficients[k] z^k."""
    out = jnp.full_like(z, coefficients[-1])
    for c in coefficients[-2::-1]:
        out = out * z + c
    return out


def cos_sin(y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(cos y, sin y) from one range reduction and two polynomials.

    y = k pi/2 + r with k = round(2y / pi) and |r| <= pi/4 (three-part Cody-Waite
    reduction), then Taylor polynomials of sin r and cos r and a quadrant select:
    only multiplications and additions, which XLA vectorises on CPU (~10x faster
    than ``jnp.sin`` plus ``jnp.cos`` in float64). Error ~1 ulp (of 1) for |y| up
    to 1.6e6 and of the order of ulp(y) beyond (the rounding error of y itself);
    for |y| > 2^52 (no phase information left) the values stay in [-1, 1] up to
    1e-15. Other dtypes than float64 use ``jnp.cos`` and ``jnp.sin``.

    Args:
        y: (...) real array.
    Returns:
        (cos y, sin y), two (...) arrays of y's dtype.
    """
    if y.dtype != jnp.float64:
        return jnp.cos(y), jnp.sin(y)
    k = jnp.round(y * (2.0 / math.pi))
    r = ((y - k * _PIO2_1) - k * _PIO2_2) - k * _PIO2_3
    r = jnp.clip(r, -0.8, 0.8)  # only moves r when |y| > 2^52
    z = r * r
    sin_r = r + r * z * _horner(z, _SIN_TAYLOR)
    cos_r = 1.0 - 0.5 * z + z * z * _horner(z, _COS_TAYLOR)
    quadrant = k - 4.0 * jnp.floor(0.25 * k)  # k mod 4, as a float
    cos_y = jnp.where(
        quadrant == 0,
        cos_r,
        jnp.where(quadrant == 1, -sin_r, jnp.where(quadrant == 2, -cos_r, sin_r)),
    )
    sin_y = jnp.where(
        quadrant == 0,
        sin_r,
        jnp.where(quadrant == 1, cos_r, jnp.where(quadrant == 2, -sin_r, -cos_r)),
    )
    return cos_y, sin_y


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
    Complex x of any batch size takes :func:`sum_log_cosh_parts`. The derivative
    is sum_j tanh(x_j) dx_j (holomorphic for complex x); the imaginary part is
    defined modulo 2 pi.

    Args:
        x: (..., n) float or complex array.
    Returns:
        (...) array of the same dtype.
    """
    if jnp.iscomplexobj(x):
        return sum_log_cosh_parts(jnp.real(x), jnp.imag(x))
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


def _cosh_factor(x_re: jax.Array, x_im: jax.Array):
    """|x_re| and g = 2 exp(-|x_re|) cosh(x) for x = x_re + i x_im.

    cosh x = cosh x_re cos x_im + i sinh x_re sin x_im, so with r = exp(-2|x_re|),
    g = (1 + r) cos x_im + i sign(x_re) (1 - r) sin x_im; |g| <= 1 + r <= 2.

    Returns:
        (|x_re|, Re g, Im g), arrays like ``x_re``.
    """
    a = jnp.abs(x_re)
    r = jnp.exp(-2.0 * a)
    cos_y, sin_y = cos_sin(x_im)
    return a, (1.0 + r) * cos_y, jnp.where(x_re < 0, r - 1.0, 1.0 - r) * sin_y


def _product_groups(factors: jax.Array) -> jax.Array:
    """(..., n) -> (..., n_groups): products of ~equal groups of <= PRODUCT_GROUP.

    Groups have ceil(n / n_groups) entries; the last is padded with ones.
    """
    n = factors.shape[-1]
    n_groups = -(-n // PRODUCT_GROUP)
    size = -(-n // n_groups)
    pad = n_groups * size - n
    if pad:
        ones = jnp.ones(factors.shape[:-1] + (pad,), factors.dtype)
        factors = jnp.concatenate([factors, ones], axis=-1)
    return jnp.prod(factors.reshape(factors.shape[:-1] + (n_groups, size)), axis=-1)


@jax.custom_jvp
def sum_log_cosh_parts(x_re: jax.Array, x_im: jax.Array) -> jax.Array:
    """sum_j log cosh(x_j) over the last axis for x = x_re + i x_im, given as parts.

    cosh x_j = exp(|Re x_j|) g_j / 2 with g_j = (1 + r_j) cos(Im x_j) + i sign(Re x_j)
    (1 - r_j) sin(Im x_j), r_j = exp(-2 |Re x_j|), so sum_j log cosh x_j = sum_j
    |Re x_j| - n log 2 + sum_groups log prod_j g_j. Per hidden unit one ``exp`` and
    one :func:`cos_sin`, per group of ``PRODUCT_GROUP`` units one complex ``log``;
    |g_j| <= 2, so products cannot overflow (large |x| is safe), and underflow needs
    an average |g_j| below 1e-5, i.e. every x_j close to a zero i pi (k + 1/2) of
    cosh. Agrees with the per-unit ``log(cosh(x))`` to a few ulp of the result's
    scale. The imaginary part is defined modulo 2 pi. The derivative is the
    holomorphic sum_j tanh(x_j) (dx_re + i dx_im).

    Args:
        x_re: (..., n) real array (float64 for the fast :func:`cos_sin`).
        x_im: (..., n) real array like ``x_re``.
    Returns:
        (...) complex array (complex128 for float64 parts).
    """
    a, g_re, g_im = _cosh_factor(x_re, x_im)
    log_prod = jnp.sum(jnp.log(_product_groups(jax.lax.complex(g_re, g_im))), -1)
    return (jnp.sum(a, axis=-1) - x_re.shape[-1] * _LOG2) + log_prod


def tanh_parts(x_re: jax.Array, x_im: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Real and imaginary parts of tanh(x_re + i x_im), safe for large |x_re|.

    tanh x = sinh x / cosh x; with d = 1 - r = -expm1(-2|x_re|), c = cos x_im,
    s = sin x_im: tanh x = (sign(x_re) d (2 - d) + 4i r s c) / ((2 - d)^2 c^2 +
    d^2 s^2), accurate also for small |x_re| (d without cancellation).

    Args:
        x_re, x_im: (...) real arrays.
    Returns:
        (Re tanh x, Im tanh x), arrays like ``x_re``.
    """
    a = jnp.abs(x_re)
    d = -jnp.expm1(-2.0 * a)
    r = jnp.exp(-2.0 * a)
    c, s = cos_sin(x_im)
    scale = 1.0 / ((2.0 - d) ** 2 * c * c + d * d * s * s)
    t_re = jnp.where(x_re < 0, -d, d) * (2.0 - d) * scale
    return t_re, 4.0 * r * s * c * scale


@sum_log_cosh_parts.defjvp
def _sum_log_cosh_parts_jvp(primals, tangents):
    (x_re, x_im), (dx_re, dx_im) = primals, tangents
    t_re, t_im = tanh_parts(x_re, x_im)
    d_re = jnp.sum(t_re * dx_re - t_im * dx_im, axis=-1)
    d_im = jnp.sum(t_im * dx_re + t_re * dx_im, axis=-1)
    return sum_log_cosh_parts(x_re, x_im), jax.lax.complex(d_re, d_im)


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
    never forms the per-sample Jacobian (see ``nqs.sr``). A complex ``dtype`` is
    evaluated from the real and imaginary parts of theta (module docstring); the
    result agrees with complex arithmetic to round-off.

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
        dtype = self._compute_dtype()
        n_sites = sigma.shape[-1]
        n_hidden = n_hidden_units(self.alpha, n_sites)
        init = nn.initializers.normal(self.kernel_scale)
        kernel = self.param("kernel", init, (n_sites, n_hidden), self.param_dtype)
        b = a = None
        if self.use_hidden_bias:
            b = self.param("hidden_bias", init, (n_hidden,), self.param_dtype)
        if self.use_visible_bias:
            a = self.param("visible_bias", init, (n_sites,), self.param_dtype)
        if jnp.issubdtype(dtype, jnp.complexfloating):
            theta_re, theta_im, visible = _complex_theta(sigma, kernel, b, a, dtype)
            log_psi = sum_log_cosh_parts(theta_re, theta_im)
            return log_psi if visible is None else log_psi + visible
        x = jnp.asarray(sigma, dtype)
        theta = x @ jnp.asarray(kernel, dtype)
        if b is not None:
            theta = theta + jnp.asarray(b, dtype)
        log_psi = sum_log_cosh(theta)
        if a is not None:
            log_psi = log_psi + x @ jnp.asarray(a, dtype)
        return log_psi

    def _compute_dtype(self):
        return self.param_dtype if self.dtype is None else self.dtype

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
        dtype = self._compute_dtype()
        b = p["hidden_bias"] if self.use_hidden_bias else None
        if jnp.issubdtype(dtype, jnp.complexfloating):
            theta_re, theta_im, _ = _complex_theta(sigma, p["kernel"], b, None, dtype)
            x = jnp.asarray(sigma, theta_re.dtype)
            t_re, t_im = tanh_parts(theta_re, theta_im)
            # [Re B | Im B] = U [U; V]^T, U = [Re t, Im t], V = [-Im t, Re t]
            u = jnp.concatenate([t_re, t_im], axis=-1)
            v = jnp.concatenate([-t_im, t_re], axis=-1)
            b_parts = u @ jnp.concatenate([u, v], axis=0).T
            n = sigma.shape[0]
            b_re, b_im = b_parts[:, :n], b_parts[:, n:]
            a = x @ x.T
            gram_re, gram_im = a * b_re, a * b_im
            if self.use_hidden_bias:
                gram_re, gram_im = gram_re + b_re, gram_im + b_im
            if self.use_visible_bias:
                gram_re = gram_re + a
            return jax.lax.complex(gram_re, gram_im)
        x = jnp.asarray(sigma, dtype)
        theta = x @ jnp.asarray(p["kernel"], dtype)
        if b is not None:
            theta = theta + jnp.asarray(b, dtype)
        t = jnp.tanh(theta)
        a = x @ x.T
        b = t @ t.conj().T
        gram = a * b
        if self.use_hidden_bias:
            gram = gram + b
        if self.use_visible_bias:
            gram = gram + a
        return gram


def _complex_theta(sigma, kernel, hidden_bias, visible_bias, dtype):
    """theta = sigma W + b in real and imaginary parts, from one real product.

    Args:
        sigma: (..., n_sites) int8 configurations.
        kernel: (n_sites, n_hidden) W; hidden_bias: (n_hidden,) b or None;
            visible_bias: (n_sites,) a or None (real or complex).
        dtype: complex compute dtype.
    Returns:
        (Re theta, Im theta) (..., n_hidden) and a . sigma (...) of ``dtype`` (None
        without a visible bias); real parts in ``dtype``'s real precision.
    """
    real = jnp.finfo(dtype).dtype
    kernel = jnp.asarray(kernel, dtype)
    n_hidden = kernel.shape[-1]
    columns = [jnp.real(kernel), jnp.imag(kernel)]
    if visible_bias is not None:
        a = jnp.asarray(visible_bias, dtype)
        columns += [jnp.real(a)[:, None], jnp.imag(a)[:, None]]
    out = jnp.asarray(sigma, real) @ jnp.concatenate(columns, axis=-1)
    theta_re, theta_im = out[..., :n_hidden], out[..., n_hidden : 2 * n_hidden]
    if hidden_bias is not None:
        b = jnp.asarray(hidden_bias, dtype)
        theta_re, theta_im = theta_re + jnp.real(b), theta_im + jnp.imag(b)
    visible = None
    if visible_bias is not None:
        visible = jax.lax.complex(out[..., 2 * n_hidden], out[..., 2 * n_hidden + 1])
    return theta_re, theta_im, visible
