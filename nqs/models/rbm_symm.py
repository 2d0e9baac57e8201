"""RBM with weights tied over a symmetry group (Carleo & Troyer 2017, their
translation-invariant form; Roth & MacDonald 2021 for space groups).

Each of ``features`` filters W_f (N weights) is applied to every image σ[perms[m]]
of the configuration, θ_{m f} = W_f · σ[perms[m]] + b_f, so the network has
M · features hidden units and N · features + features + 1 parameters. With
h_m = Σ_f log cosh θ_{m f} + a Σ_i σ_i:

- trivial sector (every character 1, no spin flip): log ψ = Σ_m h_m, the product
  of all hidden units, invariant under the group;
- any other sector: log ψ = log Σ_m conj(χ_m) exp(h_m) (+ s exp(h_m(-σ)) with a spin
  flip), the projection of an RBM with ``features`` hidden units onto the sector,
  which transforms with the sector's characters.

Complex parameters are evaluated in real arithmetic (``nqs.models.rbm``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nqs.errors import InputError
from nqs.models.projection import (
    is_trivial,
    log_weighted_sum,
    projection_weights,
    symmetric_images,
)
from nqs.models.rbm import sum_log_cosh, sum_log_cosh_parts

__all__ = ["PROJECTED_SCALE", "RBMSymm", "n_features"]

#: Initial weights in a non-trivial sector have standard deviation 0.5 / sqrt(N), so
#: θ = W · σ is of order 0.5 and the projection does not cancel.
PROJECTED_SCALE = 0.5


def n_features(alpha: float, n_sites: int, n_elements: int) -> int:
    """Filters per group element: round(alpha · N / M), at least 1.

    Raises:
        InputError: ``alpha`` not positive (key ``alpha``).
    """
    if not alpha > 0:
        raise InputError("alpha", f"must be positive, got {alpha}")
    return max(1, int(round(alpha * n_sites / n_elements)))


class RBMSymm(nn.Module):
    """Symmetric RBM over the sector's group (module docstring).

    Parameters: ``kernel`` (N, F), ``hidden_bias`` (F,), ``visible_bias`` () with
    F = :func:`n_features`, initialised from a normal distribution of standard
    deviation ``kernel_scale`` (complex normal for a complex ``param_dtype``).

    Attributes:
        sector: ``nqs.symmetry.Sector`` (given by the builder from ``[symmetry]``).
        alpha: hidden-unit density; F = round(alpha · N / M) filters (at least one),
            M · F hidden units in all.
        use_visible_bias: include a Σ σ_i (one shared bias, as invariance needs).
        use_hidden_bias: include b_f.
        param_dtype: float64 (real amplitudes in a trivial sector) or complex128.
        kernel_scale: standard deviation of the initial parameters; default 0.01
            in a trivial sector (a product close to the uniform state) and
            ``PROJECTED_SCALE / sqrt(N)`` otherwise: with tiny weights the projection
            of a nearly constant RBM almost cancels, and what is left starts close
            to an excited eigenstate, where the energy gradient vanishes.
    """

    sector: Any = None
    alpha: float = 1.0
    use_visible_bias: bool = True
    use_hidden_bias: bool = True
    param_dtype: Any = jnp.float64
    kernel_scale: float | None = None

    @nn.compact
    def __call__(self, sigma: jax.Array) -> jax.Array:
        """Log-amplitudes.

        Args:
            sigma: (..., N) int8 configurations.
        Returns:
            (...) log ψ: float64 for real parameters in a trivial sector, else
            complex128.
        """
        if self.sector is None:
            raise ValueError("rbm_symm needs a [symmetry] section")
        n_sites = sigma.shape[-1]
        perms = np.asarray(self.sector.perms)
        features = n_features(self.alpha, n_sites, len(perms))
        product = is_trivial(self.sector) and self.sector.spin_flip is None
        scale = self.kernel_scale
        if scale is None:
            scale = 0.01 if product else PROJECTED_SCALE / np.sqrt(n_sites)
        init = nn.initializers.normal(scale)
        dtype = self.param_dtype
        kernel = self.param("kernel", init, (n_sites, features), dtype)
        b = (
            self.param("hidden_bias", init, (features,), dtype)
            if (self.use_hidden_bias)
            else None
        )
        a = (
            self.param("visible_bias", init, (), dtype)
            if (self.use_visible_bias)
            else None
        )
        if product:
            h = _hidden(sigma[..., perms], kernel, b, sum_all=True)
            return h if a is None else h + a * _magnetisation(sigma, h.dtype)
        images = symmetric_images(sigma, self.sector)  # (..., K, N)
        h = _hidden(images, kernel, b, sum_all=False)  # (..., K)
        if a is not None:
            h = h + a * _magnetisation(images, h.dtype)
        real = is_trivial(self.sector) and not jnp.iscomplexobj(h)
        return log_weighted_sum(h, projection_weights(self.sector), real=real)


def _magnetisation(sigma: jax.Array, dtype) -> jax.Array:
    """Σ_i σ_i over the last axis, as ``dtype``."""
    return jnp.sum(sigma, axis=-1, dtype=jnp.int32).astype(dtype)


def _hidden(images, kernel, hidden_bias, sum_all: bool) -> jax.Array:
    """Σ_f log cosh(W_f · image + b_f) per image, or over all images.

    Args:
        images: (..., K, N) int8 configurations.
        kernel: (N, F) float or complex; hidden_bias: (F,) or None.
        sum_all: add over the images too.
    Returns:
        (..., K), or (...) with ``sum_all``; float64 or complex128 like ``kernel``.
    """
    if jnp.iscomplexobj(kernel):
        real = jnp.finfo(kernel.dtype).dtype
        n_features = kernel.shape[-1]
        weights = jnp.concatenate([jnp.real(kernel), jnp.imag(kernel)], axis=-1)
        out = jnp.asarray(images, real) @ weights
        theta_re, theta_im = out[..., :n_features], out[..., n_features:]
        if hidden_bias is not None:
            theta_re = theta_re + jnp.real(hidden_bias)
            theta_im = theta_im + jnp.imag(hidden_bias)
        if sum_all:
            shape = theta_re.shape[:-2] + (-1,)
            theta_re, theta_im = theta_re.reshape(shape), theta_im.reshape(shape)
        return sum_log_cosh_parts(theta_re, theta_im)
    theta = jnp.asarray(images, kernel.dtype) @ kernel
    if hidden_bias is not None:
        theta = theta + hidden_bias
    if sum_all:
        theta = theta.reshape(theta.shape[:-2] + (-1,))
    return sum_log_cosh(theta)
