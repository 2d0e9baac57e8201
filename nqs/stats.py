"""Monte Carlo statistics of Markov-chain samples: mean, error bar, tau, split R-hat.

(:func:`weighted_statistics` is the exact counterpart for values weighted by known
probabilities, e.g. a full sum over the basis with Born weights.)

Conventions (for ``x`` of shape ``(n_chains, n_per_chain)``, ``N = n_chains *
n_per_chain``):

- ``mean`` is the average over all samples (complex if ``x`` is complex).
- ``variance`` is ``E|x - mean|^2`` over all samples (normalised by ``N``), real.
- ``tau_corr`` is the integrated autocorrelation time in the convention where
  uncorrelated samples have ``tau_corr = 0``: ``tau = sum_{t>=1} rho(t)``, so that

      error = sqrt(variance * (1 + 2 tau) / N).

  (The other common convention, ``tau_int = 1/2 + sum_{t>=1} rho(t)``, equals
  ``tau_corr + 1/2``.) For an AR(1) process ``x_t = phi x_{t-1} + noise``,
  ``tau_corr = phi / (1 - phi)``.
- ``r_hat`` is the split-R-hat of Gelman et al., *Bayesian Data Analysis* (3rd ed.),
  Sec. 11.4: each chain is cut into two halves (one chain gives two halves).
  Values well above 1 (say > 1.1) mean the chains disagree.

Estimator of ``tau``: the autocovariance of every chain is computed by FFT around the
mean over *all* chains (so chains stuck at different values show up as long
correlations instead of being hidden), averaged over chains, normalised by its value at
lag 0, and summed up to the automatic window of A. D. Sokal, "Monte Carlo methods in
statistical mechanics" (1996): the smallest ``W`` with ``W >= c * (1/2 + tau(W))``,
``c = 5``. Negative estimates (anti-correlated chains) are clipped to 0, which makes
the error bar conservative.

Complex ``x``: the autocovariance is ``E[(x_s - mean)^* (x_{s+t} - mean)]`` and only its
real part (the sum of the real-part and imaginary-part autocovariances) enters ``tau``,
so that ``error^2`` estimates ``E|mean - true mean|^2``. ``r_hat`` uses squared moduli.

Degenerate inputs: with ``n_per_chain = 1`` there is no time information: ``tau_corr =
0``, ``error = sqrt(variance / n_chains)`` (each chain contributes one independent
sample) and ``r_hat = nan``. ``r_hat`` is also ``nan`` when a half-chain has fewer than
two samples (``n_per_chain < 4``). Constant data give ``error = 0``, ``tau_corr = 0``,
``r_hat = 1``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

SOKAL_C = 5.0


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Stats:
    """Summary of a Monte Carlo estimate; every field is a scalar array.

    Attributes:
        mean: () float64 or complex128, mean over all samples.
        error: () float64, standard error of the mean, corrected for autocorrelation.
        variance: () float64, ``E|x - mean|^2``.
        tau_corr: () float64, integrated autocorrelation time (0 for independent
            samples).
        r_hat: () float64, split-R-hat (nan when undefined).
    """

    mean: jax.Array
    error: jax.Array
    variance: jax.Array
    tau_corr: jax.Array
    r_hat: jax.Array

    def __str__(self) -> str:
        return (
            f"{complex(self.mean) if jnp.iscomplexobj(self.mean) else float(self.mean)}"
            f" ± {float(self.error):.3g} [var={float(self.variance):.3g},"
            f" tau={float(self.tau_corr):.3g}, R_hat={float(self.r_hat):.4f}]"
        )


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def autocorrelation(x: jax.Array, mean: jax.Array) -> jax.Array:
    """Chain-averaged normalised autocorrelation function, by FFT.

    rho(t) = Re sum_c sum_s (x_cs - m)^* (x_c,s+t - m) / (n_chains * n * C(0)), with the
    1/n normalisation (positive semi-definite estimate).

    Args:
        x: (n_chains, n_per_chain) float or complex samples.
        mean: () value subtracted from every sample.
    Returns:
        (n_per_chain,) float64 ``rho(t)`` for ``t = 0..n_per_chain-1``; ``rho(0) = 1``
        (all zeros if the data are constant).
    """
    n = x.shape[1]
    dx = x - mean
    f = jnp.fft.fft(dx, n=_next_pow2(2 * n), axis=1)
    acov = jnp.fft.ifft(jnp.conj(f) * f, axis=1)[:, :n].real / n
    acov = jnp.mean(acov, axis=0)
    c0 = acov[0]
    safe_c0 = jnp.where(c0 > 0, c0, 1.0)
    return jnp.where(c0 > 0, acov / safe_c0, 0.0)


def integrated_time(rho: jax.Array, c: float = SOKAL_C) -> jax.Array:
    """Integrated autocorrelation time with Sokal's automatic window.

    tau(W) = sum_{t=1}^{W} rho(t); W is the smallest lag with W >= c (1/2 + tau(W)),
    or the largest available lag if none qualifies.

    Args:
        rho: (n,) normalised autocorrelation, ``rho[0] = 1``.
        c: window constant.
    Returns:
        () float64 ``tau >= 0`` (0 for independent samples).
    """
    n = rho.shape[0]
    if n < 2:
        return jnp.zeros((), dtype=rho.dtype)
    tau_w = jnp.cumsum(rho[1:])  # tau_w[k] = tau(W = k + 1)
    window = jnp.arange(1, n, dtype=rho.dtype)
    ok = window >= c * (0.5 + tau_w)
    idx = jnp.where(jnp.any(ok), jnp.argmax(ok), n - 2)
    return jnp.maximum(tau_w[idx], 0.0)


def split_r_hat(x: jax.Array) -> jax.Array:
    """Split-R-hat (Gelman et al., BDA3 Sec. 11.4) of chains cut into halves.

    With m half-chains of length h, chain means m_j and variances s_j^2 (ddof 1):
    B = h/(m-1) sum_j |m_j - m|^2, W = mean_j s_j^2, R = sqrt(((h-1)/h W + B/h) / W).

    Args:
        x: (n_chains, n_per_chain) float or complex samples; an odd middle sample
            is dropped.
    Returns:
        () float64; nan if ``n_per_chain < 4``; 1 if all samples are equal.
    """
    n_chains, n = x.shape
    h = n // 2
    if h < 2:
        return jnp.full((), jnp.nan)
    halves = jnp.concatenate([x[:, :h], x[:, n - h :]], axis=0)  # (2 n_chains, h)
    m_j = jnp.mean(halves, axis=1)
    s2_j = jnp.sum(jnp.abs(halves - m_j[:, None]) ** 2, axis=1) / (h - 1)
    w = jnp.mean(s2_j)
    b = h * jnp.sum(jnp.abs(m_j - jnp.mean(m_j)) ** 2) / (2 * n_chains - 1)
    var_plus = (h - 1) / h * w + b / h
    safe_w = jnp.where(w > 0, w, 1.0)
    r = jnp.sqrt(var_plus / safe_w)
    return jnp.where(w > 0, r, jnp.where(b > 0, jnp.inf, 1.0))


def statistics(x: jax.Array) -> Stats:
    """Mean, autocorrelation-corrected error, variance, tau and split-R-hat.

    error = sqrt(variance * (1 + 2 tau) / N); see the module docstring for the
    estimators and the degenerate cases. Jittable (shapes are static).

    Args:
        x: (n_chains, n_per_chain) float or complex samples; a 1-d array is one chain.
    Returns:
        Stats with scalar fields; ``mean`` has the (floating) dtype of ``x``.
    Raises:
        ValueError: if ``x`` is not 1-d or 2-d or is empty.
    """
    x = jnp.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(
            "statistics expects samples of shape (n_chains, n_per_chain), "
            f"got {x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    n_chains, n = x.shape
    mean = jnp.mean(x)
    variance = jnp.mean(jnp.abs(x - mean) ** 2)
    if n == 1:
        tau = jnp.zeros((), dtype=variance.dtype)
        error = jnp.sqrt(variance / n_chains)
        return Stats(mean, error, variance, tau, jnp.full((), jnp.nan, variance.dtype))
    tau = integrated_time(autocorrelation(x, mean))
    error = jnp.sqrt(variance * (1.0 + 2.0 * tau) / (n_chains * n))
    r_hat = split_r_hat(x).astype(variance.dtype)
    return Stats(mean, error, variance, tau, r_hat)


def weighted_statistics(x: jax.Array, w: jax.Array) -> Stats:
    """Exact weighted mean and variance, for sums over known probabilities.

    mean = sum_i w_i x_i, variance = sum_i w_i |x_i - mean|^2. There is no sampling
    noise, so ``error = 0``, and no chain, so ``tau_corr`` and ``r_hat`` are NaN.
    Entries with ``w_i = 0`` are ignored (their ``x_i`` may be inf or NaN, e.g. a local
    value where psi = 0). Jittable.

    Args:
        x: (...) float or complex values.
        w: (...) float64 weights of the same shape, >= 0, summing to one.
    Returns:
        Stats with scalar fields; ``mean`` has the (floating) dtype of ``x``.
    Raises:
        ValueError: if the shapes of ``x`` and ``w`` differ.
    """
    x, w = jnp.asarray(x), jnp.asarray(w)
    if x.shape != w.shape:
        raise ValueError(
            f"weighted_statistics: values {x.shape} and weights {w.shape} differ"
        )
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    x = jnp.where(w != 0, x, 0)
    mean = jnp.sum(w * x)
    variance = jnp.sum(w * jnp.abs(x - mean) ** 2)
    nan = jnp.full((), jnp.nan, variance.dtype)
    return Stats(mean, jnp.zeros((), variance.dtype), variance, nan, nan)
