"""Stochastic reconfiguration: the natural-gradient direction δ = (S + D)⁻¹ G.

Real formulation (every complex parameter leaf counts as two real parameters, its
real and imaginary parts). With ``n`` samples, centred log-derivatives
``ΔO_ik = O_k(σ_i) − <O_k>`` (complex, ``O_k = ∂ log ψ / ∂θ_k`` for real ``θ_k``) and
centred local energies ``ΔE_i``, define the real matrices

    X = [Re ΔO; Im ΔO] / √n      (2n × P; only ``Re ΔO`` when log ψ is real)
    e = [Re ΔE; Im ΔE] / √n      (2n;     only ``Re ΔE`` when log ψ is real)

so that ``S = XᵀX = Re<ΔO†ΔO>`` and the energy gradient is ``G = 2 Xᵀe`` (``G_k =
∂<E>/∂θ_k = 2 Re<ΔO_k* ΔE>``). The regularised system is

    (S + D) δ = G,     D = diag_shift · I + diag_scale · diag(S).

Weighted samples (``weights`` w_i ≥ 0 summing to one, e.g. the Born probabilities of
a full sum over the basis, ``nqs.sampler.sample_weights``): the averages become
weighted sums, ``<O_k> = Σ_j w_j O_jk``, and the rows

    X_i = √w_i (O_i − Σ_j w_j O_j),     e_i = √w_i (r_i − Σ_j w_j r_j),

so ``S = XᵀX`` and ``G = 2 Xᵀe`` are the exact ``Re<ΔO†ΔO>`` and ``2 Re<ΔO* ΔE>``.
Monte Carlo samples are the case ``w_i = 1/n`` (``weights = None``, which computes
the rows as above without any weights). Every solver takes the same rows; samples
of zero weight (ψ = 0) give zero rows and are evaluated at the heaviest sample
instead (``nqs.vstate.safe_rows``), so their infinite log ψ never gives NaN.
:func:`real_jacobian` and :func:`real_residual` return X and e.

Convention: for real parameters this is the system NetKet's SR preconditioner solves
(its gradient of a real parameter is ``2 Re F`` with ``F = <ΔO* ΔE>``, its QGT is
``Re S``), so ``learning_rate`` of an SGD step ``θ ← θ − η δ`` means the same as in
NetKet. For a complex parameter ``z = x + iy`` the direction is returned as ``δx + iδy``
(the real-formulation natural gradient); NetKet's holomorphic convention solves with
``F`` instead of ``2F`` and takes a step half as long for the same learning rate.

Solvers: ``dense`` forms ``S`` and uses a Cholesky factorisation (eigendecomposition
pseudo-inverse if Cholesky fails); ``minsr`` uses the kernel form
``δ = D⁻¹Xᵀ (X D⁻¹ Xᵀ + I)⁻¹ 2e`` (push-through identity; Chen & Heyl, Nat. Phys. 2024;
Rende et al., Commun. Phys. 2024), cheap when ``P ≫ n``; ``cg`` is matrix-free, using
Jacobian-vector products of log ψ and never forming ``S`` nor the Jacobian.
``auto`` takes the cheaper of ``dense`` and ``minsr`` by a flop model
(:func:`solve_flops`, :func:`choose_solver`).
A model may provide ``log_derivative_gram(variables, sigma) -> (n, n)``, the Gram
matrix ``G_ab = Σ_k O_k(σ_a) O_k(σ_b)*`` of its log-derivatives with respect to its
own parameters (complex derivatives for complex parameters; only for models that are
real, or holomorphic in all-complex parameters). ``minsr`` then builds the kernel
``X Xᵀ = H G H / n`` (``H`` centres) from it and gets ``Xᵀy`` by one vector-Jacobian
product, so the Jacobian is never formed: for an RBM the kernel costs
``n² (N + M)`` instead of ``n² N M`` (``nqs.models.RBM``); with weights the kernel is
``W^½ (I − 1wᵀ) G (I − w1ᵀ) W^½``.
When every parameter is complex and the samples satisfy the Cauchy-Riemann equations
``O_y = i O_x`` (a holomorphic ansatz; checked inside the step), ``dense`` and ``minsr``
solve the equivalent complex system ``(S_c + D) δ = 2F`` of half the size instead.
``pinv`` diagonalises S and solves in its eigenbasis with a cutoff of small
eigenvalues (``rcond``, smooth or sharp) and optionally the signal-to-noise cutoff of
Schmitt & Heyl (``snr_cutoff``), the regularisations of time-dependent VMC
(``nqs.sr_spectral``); its info adds ``n_modes``, ``snr_min`` and ``snr_median``.

This module holds the settings, the real formulation and the dispatch; the solver
kernels and the Gram path are in ``nqs.sr_solvers``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from nqs.sr_solvers import (
    adjoint_times,
    column_runs,
    gram_solve,
    holomorphic_solve,
    solve_cg,
    solve_dense,
    solve_minsr,
)
from nqs.sr_spectral import spectral_solve
from nqs.vstate import join_chunks, safe_rows, split_chunks

__all__ = [
    "GRAM_METHOD",
    "JACOBIAN_BUDGET",
    "SOLVERS",
    "SR",
    "choose_solver",
    "gram_formulation",
    "natural_gradient",
    "params_to_real",
    "real_jacobian",
    "real_residual",
    "solve_cg",
    "solve_dense",
    "solve_flops",
    "solve_minsr",
    "sr_direction",
]

SOLVERS = ("auto", "dense", "minsr", "cg", "pinv")

#: Jacobian (or kernel) memory above which ``auto`` uses the matrix-free solver (bytes).
JACOBIAN_BUDGET = 2 * 1024**3
#: Name of the optional model method giving the Gram matrix of the log-derivatives.
GRAM_METHOD = "log_derivative_gram"


@dataclasses.dataclass(frozen=True)
class SR:
    """Stochastic-reconfiguration settings (static, hashable).

    Attributes:
        diag_shift: absolute shift ε added to the diagonal of S.
        diag_scale: relative regularisation: adds ``diag_scale · diag(S)``; None = off.
        solver: "auto" | "dense" | "minsr" | "cg".
        cg_tol: relative tolerance of the conjugate-gradient solver.
        cg_maxiter: iteration cap of the conjugate-gradient solver (None: jax default).
        shift_schedule: optional ``step -> shift`` (e.g. an optax schedule) replacing
            ``diag_shift``.
        rcond: solver "pinv": eigenvalues of S below ``rcond · λ_max`` are cut off.
        smooth_cutoff: solver "pinv": smooth filters instead of sharp cutoffs.
        snr_cutoff: solver "pinv": signal-to-noise ratio below which a mode of S is
            dropped (``nqs.sr_spectral``); None: off.
    """

    diag_shift: float = 0.01
    diag_scale: float | None = None
    solver: str = "auto"
    cg_tol: float = 1e-8
    cg_maxiter: int | None = None
    shift_schedule: Callable[[Any], Any] | None = None
    rcond: float = 1e-12
    smooth_cutoff: bool = True
    snr_cutoff: float | None = None

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.diag_shift < 0:
            raise ValueError(f"diag_shift must be >= 0, got {self.diag_shift}")
        if self.diag_scale is not None and self.diag_scale < 0:
            raise ValueError(f"diag_scale must be >= 0, got {self.diag_scale}")
        if self.solver in ("cg", "pinv") and self.diag_scale:
            raise ValueError("diag_scale is for solvers dense and minsr")
        if self.rcond < 0:
            raise ValueError(f"rcond must be >= 0, got {self.rcond}")
        if self.snr_cutoff is not None and self.solver != "pinv":
            raise ValueError('snr_cutoff needs solver = "pinv"')

    def shift(self, step) -> jax.Array:
        """The absolute diagonal shift at optimisation step ``step``."""
        if self.shift_schedule is None:
            return jnp.asarray(self.diag_shift, dtype=float)
        return jnp.asarray(self.shift_schedule(step), dtype=float)


# ----------------------------------------------------------------------------
# Real formulation of a parameter pytree (the solvers are in nqs.sr_solvers)


def _split_params(params) -> tuple[list, Callable[[list], Any]]:
    """The leaves of ``params`` as real arrays ([real; imag] stacked for a complex
    leaf), and the inverse map rebuilding the pytree from such a list."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    is_cplx = tuple(jnp.iscomplexobj(x) for x in leaves)
    split = [
        jnp.stack([x.real, x.imag]) if c else x
        for x, c in zip(leaves, is_cplx, strict=True)
    ]

    def join(parts):
        out = [
            jax.lax.complex(p[0], p[1]) if c else p
            for p, c in zip(parts, is_cplx, strict=True)
        ]
        return jax.tree_util.tree_unflatten(treedef, out)

    return split, join


def params_to_real(params) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    """Flatten ``params`` into a real vector (complex leaves → real, imag parts).

    Returns:
        (theta (P,) float64, unravel: theta -> pytree like ``params``).
    """
    split, join = _split_params(params)
    theta, unravel_split = ravel_pytree(split)
    return theta, lambda vec: join(unravel_split(vec))


def _is_complex_output(model, params, sigma) -> bool:
    out = jax.eval_shape(lambda p, s: model.apply(p, s), params, sigma[:1])
    return jnp.issubdtype(out.dtype, jnp.complexfloating)


def _real_log_psi(model, unravel, is_cplx: bool):
    """theta, sigma (b, n_sites) -> (b,) or (2, b) real parts of log ψ."""

    def f(theta, sigma):
        out = model.apply(unravel(theta), sigma)
        if is_cplx:
            return jnp.stack([out.real, out.imag])
        return out.real if jnp.iscomplexobj(out) else out

    return f


def real_jacobian(model, params, sigma, chunk_size=None, weights=None) -> jax.Array:
    """Centred real-formulation Jacobian X (m, P), with S = XᵀX.

    Rows ``(O_i − mean_j O_j) / √n`` (Monte Carlo), or with weights
    ``√w_i (O_i − Σ_j w_j O_j)`` (zero for w_i = 0); for a complex log ψ the rows of
    the real parts come first, then those of the imaginary parts (m = 2n), else m = n.
    Together with :func:`real_residual` the force is ``F = Xᵀe`` (G = 2F).

    Args:
        model: Flax module; apply maps (b, n_sites) int8 to (b,) log ψ.
        params: parameter pytree.
        sigma: (n, n_sites) int8 samples.
        chunk_size: evaluate per-sample Jacobians in chunks of this many samples.
        weights: None (Monte Carlo), or (n,) float64 weights summing to one.
    Returns:
        (m, P) float64, P = number of real parameters (``params_to_real``).
    """
    if weights is not None:
        weights = weights.reshape(-1)
        sigma = safe_rows(sigma, weights)
    split, join = _split_params(params)
    is_cplx = _is_complex_output(model, params, sigma)
    f = _real_log_psi(model, join, is_cplx)

    def one(s):
        # per-leaf derivatives, joined once in params_to_real's order (a
        # derivative through the flat vector's unravel costs a pass per leaf)
        grads = jax.jacrev(lambda parts: f(parts, s[None]))(split)
        lead = 2 if is_cplx else 1
        return jnp.concatenate([g.reshape(lead, 1, -1) for g in grads], axis=-1)

    n = sigma.shape[0]
    if chunk_size is None or chunk_size >= n:
        jac = jax.vmap(one)(sigma)
    else:
        jac = jax.lax.map(jax.vmap(one), split_chunks(sigma, chunk_size))
        jac = join_chunks(jac, n)
    jac = jnp.moveaxis(jac[:, :, 0, :], 1, 0)  # (1 or 2, n, P)
    if weights is None:
        jac = jac - jnp.mean(jac, axis=1, keepdims=True)
        return jac.reshape(-1, jac.shape[-1]) / jnp.sqrt(n)
    w = weights.astype(jac.dtype)
    jac = jac - jnp.einsum("i,cip->cp", w, jac)[:, None]
    return (jnp.sqrt(w)[:, None] * jac).reshape(-1, jac.shape[-1])


def real_residual(r: jax.Array, is_cplx: bool, weights=None) -> jax.Array:
    """Centred per-sample residual e in the rows of :func:`real_jacobian`.

    ``(r_i − mean r) / √n`` (Monte Carlo) or ``√w_i (r_i − Σ_j w_j r_j)`` (zero for
    w_i = 0, whatever r_i is); the real parts, then for ``is_cplx`` the imaginary
    parts. With r = E_loc, ``Xᵀe = Re<ΔO* ΔE>`` is half the energy gradient.

    Args:
        r: (...) float64 or complex128 per-sample values (flattened).
        is_cplx: whether log ψ is complex (the rows of :func:`real_jacobian`).
        weights: None (Monte Carlo), or (...) float64 weights summing to one.
    Returns:
        (m,) float64, m = n or 2n.
    """
    e = r.reshape(-1)
    n = e.shape[0]
    if weights is None:
        de = e - jnp.mean(e)
        parts = [de.real, de.imag] if is_cplx else [de.real]
        return jnp.concatenate(parts) / jnp.sqrt(n)
    w = weights.reshape(-1)
    e = jnp.where(w != 0, e, 0)
    de = jnp.sqrt(w) * (e - jnp.sum(w * e))
    parts = [de.real, de.imag] if is_cplx else [de.real]
    return jnp.concatenate(parts)


def solve_flops(
    solver: str, n_rows: int, n_params: int, use_gram: bool = False
) -> float:
    """Flop model of one SR solve with an m × P real-formulation Jacobian X.

    ``dense`` forms S = XᵀX and factorises it: ``m P² + P³/3``. ``minsr`` forms the
    kernel X Xᵀ and factorises it: ``m² P + m³/3``, or only ``m³/3`` through the
    model's Gram matrix (``use_gram``), whose own cost (``n² (N + M)`` for an RBM) and
    the per-sample Jacobian the other paths need are left out. The holomorphic
    complex systems have half the rows and columns in complex arithmetic, which scales
    every term alike, so the comparison is the same in real or complex counts.

    Args:
        solver: "dense" or "minsr".
        n_rows: m, the rows of X (samples, twice that for a complex log ψ).
        n_params: P, the real parameters (a complex one counts twice).
        use_gram: minsr through ``log_derivative_gram``.
    Returns:
        the flop count (float, multiply-adds).
    """
    m, p = float(n_rows), float(n_params)
    if solver == "dense":
        return m * p**2 + p**3 / 3
    return (0.0 if use_gram else m**2 * p) + m**3 / 3


def choose_solver(sr: SR, n_rows: int, n_params: int, use_gram: bool = False) -> str:
    """Resolve ``auto`` by the cost of the solve, :func:`solve_flops`.

    ``minsr`` when its flop count is below that of ``dense`` (without the Gram matrix
    that is P > rows; with it ``m³/3 < m P² + P³/3``, e.g. a complex RBM of 860
    complex parameters on 1024 samples), else ``dense``; ``cg`` when the matrix the
    chosen solver stores (the Jacobian, or through the Gram matrix only the rows ×
    rows kernel) exceeds ``JACOBIAN_BUDGET``.
    """
    if sr.solver != "auto":
        return sr.solver
    minsr = solve_flops("minsr", n_rows, n_params, use_gram)
    dense = solve_flops("dense", n_rows, n_params, use_gram)
    solver = "minsr" if minsr < dense else "dense"
    stored = n_rows**2 if solver == "minsr" and use_gram else n_rows * n_params
    if stored * 8 > JACOBIAN_BUDGET and not sr.diag_scale:
        return "cg"
    return solver


def gram_formulation(model, params, sigma, sr: SR) -> str | None:
    """How ``minsr`` uses the model's ``log_derivative_gram``, or None if it cannot.

    Returns:
        "real" (real parameters, real log ψ), "holomorphic" (every parameter
        complex, complex log ψ: the hook's contract is that log ψ is then
        holomorphic), or None (no hook, ``diag_scale`` set (it needs diag S), mixed
        real and complex parameters, or real parameters with a complex output).
    """
    if sr.diag_scale or not callable(getattr(model, GRAM_METHOD, None)):
        return None
    leaves = jax.tree_util.tree_leaves(params)
    cplx_params = [jnp.iscomplexobj(x) for x in leaves]
    cplx_out = _is_complex_output(model, params, sigma)
    if not any(cplx_params) and not cplx_out:
        return "real"
    if all(cplx_params) and cplx_out:
        return "holomorphic"
    return None


def natural_gradient(
    model,
    params,
    samples: jax.Array,
    residual: jax.Array,
    sr: SR,
    step,
    chunk_size: int | None = None,
    *,
    shift_multiplier=1.0,
    weights: jax.Array | None = None,
) -> tuple[Any, dict]:
    """Solve (S + D) x = 2 Re<ΔO* Δr> for a per-sample residual r; x like ``params``.

    With ``r = E_loc`` this is the SR direction (:func:`sr_direction`); other
    residuals (e.g. ``-i E_loc`` for real-time evolution) reuse the same solvers.

    Args:
        model: Flax module; apply maps (b, n_sites) int8 to (b,) log ψ.
        params: parameter pytree (real and/or complex leaves).
        samples: (..., n_sites) int8 samples (flattened over leading axes).
        residual: (...,) float64 or complex128 per-sample values r(σ) (centred here).
        sr: SR settings (solver, shifts).
        step: step index (int scalar) for the shift schedule.
        chunk_size: chunking of the per-sample Jacobian.
        shift_multiplier: multiplies the shift (the driver raises it after a rejected
            step).
        weights: None (Monte Carlo averages), or (...,) float64 per-sample weights
            summing to one (exact weighted sums; see the module docstring).
    Returns:
        (x: pytree like params, complex leaves as δx + iδy;
         info: {"diag_shift": (), "grad_norm": () norm of the right-hand side}).
    """
    sigma = samples.reshape(-1, samples.shape[-1])
    if weights is not None:
        weights = weights.reshape(-1)
        sigma = safe_rows(sigma, weights)
    theta, unravel = params_to_real(params)
    is_cplx = _is_complex_output(model, params, sigma)
    n_rows = sigma.shape[0] * (2 if is_cplx else 1)
    gram = gram_formulation(model, params, sigma, sr)
    solver = choose_solver(sr, n_rows, theta.shape[0], gram is not None)
    shift = sr.shift(step) * shift_multiplier
    if solver == "minsr" and gram is not None:
        holomorphic = gram == "holomorphic"
        x, g_norm = gram_solve(
            model, params, sigma, residual, shift, holomorphic, weights
        )
        return x, {"diag_shift": shift, "grad_norm": g_norm}

    eps = real_residual(residual, is_cplx, weights)
    if solver == "pinv":
        X = real_jacobian(model, params, sigma, chunk_size, weights)
        x, spectral = spectral_solve(
            X,
            eps,
            shift,
            rcond=sr.rcond,
            smooth=sr.smooth_cutoff,
            snr_cutoff=sr.snr_cutoff,
            n_samples=None if weights is not None else sigma.shape[0],
        )
        g_norm = jnp.linalg.norm(2.0 * adjoint_times(X, eps))
        return unravel(x), {"diag_shift": shift, "grad_norm": g_norm, **spectral}
    if solver == "cg":
        matvec, xt = _jacobian_closures(
            model, params, sigma, is_cplx, weights, chunk_size
        )
        g = 2.0 * xt(eps)
        x, _ = solve_cg(matvec, g, shift, tol=sr.cg_tol, maxiter=sr.cg_maxiter)
    else:
        X = real_jacobian(model, params, sigma, chunk_size, weights)
        g = 2.0 * adjoint_times(X, eps)
        split = _complex_columns(params) if is_cplx else None

        def real_solve(_):
            if solver == "dense":
                return solve_dense(X, g, shift, sr.diag_scale)
            return solve_minsr(X, 2.0 * eps, shift, sr.diag_scale)

        if split is None:
            x = real_solve(None)
        else:
            x = jax.lax.cond(
                _is_holomorphic(X, split),
                lambda _: holomorphic_solve(
                    X, eps, split, solver, shift, sr.diag_scale
                ),
                real_solve,
                None,
            )
    info = {"diag_shift": shift, "grad_norm": jnp.linalg.norm(g)}
    return unravel(x), info


def sr_direction(
    model,
    params,
    samples: jax.Array,
    e_loc: jax.Array,
    sr: SR,
    step,
    chunk_size: int | None = None,
    *,
    shift_multiplier=1.0,
    weights: jax.Array | None = None,
) -> tuple[Any, dict]:
    """Natural-gradient direction δ = (S + D)⁻¹ G, as a pytree like ``params``.

    Args:
        model: Flax module; apply maps (b, n_sites) int8 to (b,) log ψ.
        params: parameter pytree (real and/or complex leaves).
        samples: (..., n_sites) int8 samples (flattened over leading axes).
        e_loc: (...,) local energies of ``samples`` (float64 or complex128).
        sr: SR settings.
        step: optimisation step (int scalar) for the shift schedule.
        chunk_size: chunking of the per-sample Jacobian.
        shift_multiplier: multiplies the shift (the driver raises it after a rejected
            step).
        weights: None (Monte Carlo), or (...,) float64 per-sample weights summing to
            one (e.g. the Born probabilities of a full sum: exact S and G).
    Returns:
        (direction: pytree like params, info: {"diag_shift", "grad_norm"}), where
        grad_norm is the norm of the energy gradient G.
    """
    return natural_gradient(
        model,
        params,
        samples,
        e_loc,
        sr,
        step,
        chunk_size,
        shift_multiplier=shift_multiplier,
        weights=weights,
    )


def _complex_columns(params) -> tuple[np.ndarray, np.ndarray] | None:
    """Columns of the real and imaginary parts in θ if every leaf is complex."""
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves or not all(jnp.iscomplexobj(x) for x in leaves):
        return None
    re, im, offset = [], [], 0
    for leaf in leaves:  # params_to_real stores a leaf as [all real; all imag]
        re.append(offset + np.arange(leaf.size))
        im.append(offset + leaf.size + np.arange(leaf.size))
        offset += 2 * leaf.size
    return np.concatenate(re), np.concatenate(im)


def _is_holomorphic(X: jax.Array, split) -> jax.Array:
    """Cauchy-Riemann on the samples: O_y = i O_x for every complex parameter."""
    n = X.shape[0] // 2
    scale, dev = 1e-300, 0.0
    # per run of contiguous columns (a leaf's real or imaginary parts): slices that
    # fuse into the reductions, no gathered copy of the columns
    for run_x, run_y in zip(*(column_runs(idx) for idx in split), strict=True):
        ox, oy = X[:, run_x], X[:, run_y]
        scale = jnp.maximum(scale, jnp.max(jnp.abs(ox)))
        dev = jnp.maximum(dev, jnp.max(jnp.abs(oy[:n] + ox[n:])))
        dev = jnp.maximum(dev, jnp.max(jnp.abs(oy[n:] - ox[:n])))
    return dev <= 1e-9 * scale


def _jacobian_closures(model, params, sigma, is_cplx, weights=None, chunk_size=None):
    """Matrix-free S v = Xᵀ(X v) and Xᵀ c via linearisation of log ψ.

    With weights, X v = √w (u − Σ w u) for u = O v, and Xᵀ c = Oᵀ (√w c − w Σ √w c).
    """
    theta, unravel = params_to_real(params)
    f = _real_log_psi(model, unravel, is_cplx)
    n = sigma.shape[0]
    if chunk_size is None or chunk_size >= n:
        _, jvp = jax.linearize(lambda t: f(t, sigma), theta)
        vjp = jax.linear_transpose(jvp, theta)
    else:
        jvp, vjp = _chunked_linear_maps(f, theta, sigma, chunk_size, is_cplx)

    shape = (2, n) if is_cplx else (n,)
    if weights is None:

        def centre(u):  # u: (n,) or (2, n)
            return u - jnp.mean(u, axis=-1, keepdims=True)

        def xv(v):
            return centre(jvp(v)).reshape(-1) / jnp.sqrt(n)

        def xt(c):
            return vjp(centre(c.reshape(shape)) / jnp.sqrt(n))[0]

    else:
        sqrt_w = jnp.sqrt(weights)

        def xv(v):
            u = jvp(v)
            u = u - jnp.sum(weights * u, axis=-1, keepdims=True)
            return (sqrt_w * u).reshape(-1)

        def xt(c):
            c = sqrt_w * c.reshape(shape)
            return vjp(c - weights * jnp.sum(c, axis=-1, keepdims=True))[0]

    def matvec(v):
        return xt(xv(v))

    return matvec, xt


def _chunked_linear_maps(f, theta, sigma, chunk_size: int, is_cplx: bool):
    """v -> O v and c -> (Oᵀ c,) of ``f`` chunk by chunk (``vstate.split_chunks``).

    Nothing of the linearisation is stored: each product re-runs the model on one
    chunk at a time, so the memory is that of one chunk (twice the flops of a stored
    linearisation).
    """
    n = sigma.shape[0]
    chunks = split_chunks(sigma, chunk_size)

    def rows(u):  # (n_chunks, [2,] chunk) -> (n,) or (2, n)
        u = jnp.moveaxis(u, 1, -1) if is_cplx else u
        u = join_chunks(u, n)
        return u.T if is_cplx else u

    def jvp(v):
        def one(s):
            return jax.jvp(lambda t: f(t, s), (theta,), (v,))[1]

        return rows(jax.lax.map(one, chunks))

    def vjp(c):
        c = c.T if is_cplx else c  # (n, [2])
        cts = split_chunks(c, chunk_size, zero_pad=True)  # (n_chunks, chunk, [2])
        cts = jnp.moveaxis(cts, -1, 1) if is_cplx else cts

        def body(acc, xs):
            s, ct = xs
            return acc + jax.vjp(lambda t: f(t, s), theta)[1](ct)[0], None

        total, _ = jax.lax.scan(body, jnp.zeros_like(theta), (chunks, cts))
        return (total,)

    return jvp, vjp
