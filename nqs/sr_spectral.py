"""The SR system solved in the eigenbasis of S, with spectral regularisations.

Solver ``pinv`` of ``nqs.sr``: with the real-formulation centred Jacobian ``X``
(m × P, ``S = XᵀX``) and residual ``e`` (m,) of ``nqs.sr``, the right-hand side is
``g = 2 Xᵀ e``. In the eigenbasis ``S = V diag(λ) Vᵀ`` with ``ρ = Vᵀ g``,

    x = V diag(f_k / (λ_k + shift)) ρ,

where the filter ``f_k`` combines

* a cutoff of small eigenvalues, ``λ_k < rcond · λ_max`` (the pseudo-inverse), sharp
  (0 or 1) or smooth ``1 / (1 + (rcond λ_max / λ_k)^6)``;
* optionally the signal-to-noise cutoff of Schmitt & Heyl (PRL 125, 100503, 2020): each
  sample contributes ``Q_ik`` to ``ρ_k = mean_i Q_ik``, and ``SNR_k = √n |ρ_k| /
  std_i(Q_ik)``; a mode whose force is mostly Monte Carlo noise
  (``SNR_k < snr_cutoff``) is dropped (sharp) or damped by ``1 / (1 + (snr_cutoff /
  SNR_k)^6)`` (smooth). Exact sums (per-sample weights given) have no noise: the SNR
  is infinite and the cutoff inactive.

The number of modes kept (``f_k > 1/2``) and the SNR spectrum (minimum and median over
the modes that pass the eigenvalue cutoff) are returned as diagnostics. Cost: one
P × P eigendecomposition and one m × P × P product (for the SNR), so for models with
up to a few thousand parameters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _filter(ratio: jax.Array, smooth: bool) -> jax.Array:
    """1 / (1 + ratio^6) (smooth) or [ratio < 1] (sharp), ratio = cut / value ≥ 0."""
    if smooth:
        return 1.0 / (1.0 + ratio**6)
    return (ratio < 1.0).astype(ratio.dtype)


def spectral_solve(
    X: jax.Array,
    eps: jax.Array,
    shift,
    *,
    rcond: float = 1e-12,
    smooth: bool = True,
    snr_cutoff: float | None = None,
    n_samples: int | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Regularised solution of (S + shift) x = 2 Xᵀ e in the eigenbasis of S.

    Args:
        X: (m, P) float64 centred real-formulation Jacobian (``nqs.sr.real_jacobian``;
            m = n, or 2n with the rows of the real parts, then of the imaginary
            parts, of n samples).
        eps: (m,) float64 centred residual in the same rows (``nqs.sr.real_residual``).
        shift: () diagonal shift added to every eigenvalue.
        rcond: eigenvalues below ``rcond · λ_max`` are cut off (smoothly or sharply).
        smooth: smooth instead of sharp filters.
        snr_cutoff: signal-to-noise ratio below which a mode is dropped; None: off.
        n_samples: n, the Monte Carlo samples behind the rows (rows scaled by 1/√n);
            None for exact sums (no noise, SNR infinite).
    Returns:
        (x (P,) float64, info {"n_modes": () int64 modes kept, "snr_min",
        "snr_median": () float64 over the modes passing the eigenvalue cutoff, NaN
        for exact sums})
    """
    s = X.T @ X
    lam, v = jnp.linalg.eigh(s)
    g = 2.0 * X.T @ eps
    rho = v.T @ g
    lam_max = jnp.maximum(jnp.max(lam), 1e-300)
    pos = jnp.maximum(lam, 0.0)
    ratio = rcond * lam_max / jnp.where(pos > 0, pos, 1e-300)
    f = _filter(ratio, smooth) if rcond > 0 else jnp.ones_like(lam)
    passed = f > 0.5
    snr_min = snr_median = jnp.asarray(jnp.nan)
    if n_samples is not None:
        m = X.shape[0]
        parts = m // n_samples
        y = (X @ v) * eps[:, None]  # (m, P): row contributions to rho / 2
        q = 2.0 * n_samples * jnp.sum(y.reshape(parts, n_samples, -1), axis=0)
        std = jnp.std(q, axis=0)
        snr = jnp.sqrt(n_samples) * jnp.abs(rho) / jnp.maximum(std, 1e-300)
        masked = jnp.where(passed, snr, jnp.nan)
        snr_min, snr_median = jnp.nanmin(masked), jnp.nanmedian(masked)
        if snr_cutoff is not None:
            f = f * _filter(snr_cutoff / jnp.maximum(snr, 1e-300), smooth)
    denom = lam + shift
    inv = jnp.where((f > 0) & (denom > 0), f / jnp.where(denom > 0, denom, 1.0), 0.0)
    x = v @ (inv * rho)
    info = {
        "n_modes": jnp.sum(f > 0.5).astype(jnp.int64),
        "snr_min": snr_min,
        "snr_median": snr_median,
    }
    return x, info
