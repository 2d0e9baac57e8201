"""Projection of a wave function onto a symmetry sector, and the sum it needs.

For a sector with elements g_m (site maps ``perms[m]``), characters χ_m and optional
spin flip s, the projected amplitude is

    ψ_P(σ) = Σ_m conj(χ_m) [ψ(σ[perms[m]]) + s ψ(-σ[perms[m]])]

(the constant d / 2M of the projector dropped), so that ψ_P(σ[perms[h]]) = χ_h ψ_P(σ)
for every element h and ψ_P(-σ) = s ψ_P(σ) (``nqs.symmetry.sector`` gives the
convention). :func:`symmetric_images` lists the K = M (or 2M) configurations,
:func:`projection_weights` their weights, and :func:`log_weighted_sum` (from complex
log-terms) or :func:`log_weighted_sum_parts` (from real and imaginary parts) adds
w_k exp(l_k) in log space without overflow and without NaN when the sum vanishes
(a configuration the sector forbids). :class:`Symmetrized` wraps any model.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nqs.models.rbm import cos_sin

__all__ = [
    "ZERO_LOG_AMPLITUDE",
    "Symmetrized",
    "is_trivial",
    "log_weighted_sum",
    "log_weighted_sum_parts",
    "projection_weights",
    "symmetric_images",
]

#: log ψ returned (relative to the largest term) where the projection vanishes:
#: exp(-1000) underflows to 0, so the sampler never accepts such a configuration.
ZERO_LOG_AMPLITUDE = -1000.0
#: A weighted sum below this fraction of the sum of its moduli is a cancellation to
#: round-off (a configuration invariant under an element whose character is not 1),
#: per dtype of the terms (a model evaluated in float32 rounds at ~1e-7).
CANCELLATION = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


def symmetric_images(sigma: jax.Array, sector) -> jax.Array:
    """The configurations the sector's projection sums over.

    Args:
        sigma: (..., N) int8 configurations.
        sector: ``nqs.symmetry.Sector``.
    Returns:
        (..., K, N) int8: ``sigma[..., perms[m]]`` for m < M, followed with a spin
        flip by their negatives (K = 2M).
    """
    images = sigma[..., np.asarray(sector.perms)]
    if sector.spin_flip is None:
        return images
    return jnp.concatenate([images, -images], axis=-2)


def projection_weights(sector) -> np.ndarray:
    """(K,) complex128 weights of :func:`symmetric_images`: conj(χ_m), then
    s conj(χ_m) for the flipped copies."""
    weights = np.conj(np.asarray(sector.characters, np.complex128))
    if sector.spin_flip is not None:
        weights = np.concatenate([weights, sector.spin_flip * weights])
    return weights


def is_trivial(sector) -> bool:
    """True if every weight is +1 (the projection of a real ψ stays real and
    positive, so its log is real)."""
    return bool(np.allclose(projection_weights(sector), 1.0, atol=1e-12))


def log_weighted_sum(log_terms: jax.Array, weights, real: bool = False) -> jax.Array:
    """log Σ_k w_k exp(l_k) over the last axis, stable in both directions.

    Args:
        log_terms: (..., K) float or complex log-amplitudes l_k.
        weights: (K,) real or complex static (numpy) weights w_k.
        real: return the real log (only valid when every w_k exp(l_k) is real and
            positive, e.g. unit weights and real l_k).
    Returns:
        (...) complex (real with ``real``): the imaginary part is the phase of the
        sum, defined modulo 2π. See :func:`log_weighted_sum_parts`.
    """
    if real:
        x = jnp.real(log_terms)
        shift = jax.lax.stop_gradient(jnp.max(x, axis=-1))
        scaled = jnp.exp(x - shift[..., None])
        total = jnp.sum(scaled * jnp.real(jnp.asarray(weights, x.dtype)), axis=-1)
        return shift + jnp.log(total)
    if jnp.iscomplexobj(log_terms):
        return log_weighted_sum_parts(jnp.real(log_terms), jnp.imag(log_terms), weights)
    return log_weighted_sum_parts(log_terms, None, weights)


def log_weighted_sum_parts(x: jax.Array, y: jax.Array | None, weights) -> jax.Array:
    """log Σ_k w_k exp(x_k + i y_k) over the last axis, from real and imaginary parts.

    With shift = max_k x_k (no gradient through it): shift + log Σ_k w_k
    exp(x_k - shift) (cos y_k + i sin y_k), so no term overflows and the largest has
    modulus 1. Where |Σ| is below ``CANCELLATION`` of Σ_k |w_k| exp(x_k - shift) (an
    exact cancellation: a configuration the sector forbids) the result is shift +
    ``ZERO_LOG_AMPLITUDE``, and a double ``where`` keeps the gradients finite (zero).
    Everything is real arithmetic in the dtype of ``x``.

    Args:
        x: (..., K) real parts.
        y: (..., K) imaginary parts like ``x``, or None for real terms.
        weights: (K,) real or complex static (numpy) weights w_k.
    Returns:
        (...) complex array (complex128 for float64 parts, complex64 for float32).
    """
    weights = np.asarray(weights, dtype=np.complex128)
    w_re, w_im = (jnp.asarray(w, x.dtype) for w in (weights.real, weights.imag))
    shift = jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    e = jnp.exp(x - shift)
    if y is None:
        total_re, total_im = e @ w_re, e @ w_im
    else:
        c, s = cos_sin(y)
        total_re = jnp.sum(e * (w_re * c - w_im * s), axis=-1)
        total_im = jnp.sum(e * (w_re * s + w_im * c), axis=-1)
    scale = jax.lax.stop_gradient(e @ jnp.asarray(np.abs(weights), x.dtype))
    tol = CANCELLATION.get(np.dtype(x.dtype), 1e-4)
    vanished = total_re * total_re + total_im * total_im <= (tol * scale) ** 2
    total = jax.lax.complex(
        jnp.where(vanished, jnp.ones_like(total_re), total_re), total_im
    )
    shift = shift[..., 0]
    return jnp.where(vanished, shift + ZERO_LOG_AMPLITUDE + 0j, jnp.log(total) + shift)


class Symmetrized(nn.Module):
    """Any model projected onto a sector: log ψ_P(σ) = log Σ_k w_k ψ(σ_k).

    ``module`` is evaluated on all K images of each configuration (one batch of
    (batch·K, N) rows), so a step costs K times the unprojected model's. Its
    parameters sit under ``params["module"]``.

    Attributes:
        module: the Flax module to project (unbound).
        sector: ``nqs.symmetry.Sector`` (static).
    """

    module: nn.Module
    sector: Any

    @nn.compact
    def __call__(self, sigma: jax.Array) -> jax.Array:
        """Log-amplitudes of the projected state.

        Args:
            sigma: (..., N) int8 configurations.
        Returns:
            (...) complex128 log ψ_P (float64 when the sector's weights are all 1
            and the module is real).
        """
        if self.sector is None:
            raise ValueError("model.symmetrize needs a [symmetry] section")
        images = symmetric_images(sigma, self.sector)
        n_images, n_sites = images.shape[-2:]
        flat = images.reshape(-1, n_sites)
        log_psi = self.module(flat).reshape(images.shape[:-1])
        real = is_trivial(self.sector) and not jnp.iscomplexobj(log_psi)
        return log_weighted_sum(log_psi, projection_weights(self.sector), real=real)
