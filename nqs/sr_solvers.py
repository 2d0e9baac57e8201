"""Linear solvers of the SR system (S + D) x = g, and its Gram-matrix path.

The system is given by the centred real-formulation Jacobian ``X`` (``S = XᵀX``, see
``nqs.sr``), by a closure ``v -> S v`` (conjugate gradient), or, for a model with a
``log_derivative_gram`` method, by the Gram matrix of its log-derivatives. ``dense``
factorises ``S + D`` (P × P); ``minsr`` the kernel ``X D⁻¹ Xᵀ + I`` (m × m, cheap when
``P ≫ m``; Chen & Heyl, Nat. Phys. 2024; Rende et al., Commun. Phys. 2024).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def _regulariser(diag_s: jax.Array, shift, scale) -> jax.Array:
    """Diagonal D = shift + scale · diag(S), (P,) float64."""
    d = jnp.full_like(diag_s, shift)
    if scale is not None:
        d = d + scale * diag_s
    return d


#: A Gram matrix of at least 2 · GRAM_MIN_BLOCK rows is formed in up to GRAM_BLOCKS²
#: blocks, only those on and above the diagonal computed (10 of 16: 5/8 of the work).
GRAM_BLOCKS = 4
GRAM_MIN_BLOCK = 256
#: ... and only when the product is large enough to pay for its longer compilation
#: (m² P multiply-adds; ~0.1 s of work on a CPU core).
GRAM_MIN_WORK = 2**32


def hermitian_product(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b.conj().T`` for a product known to be Hermitian (a = X D, b = X with D
    real diagonal, or a = b), by blocks of rows: the blocks above the diagonal are
    computed, those below are their conjugate transposes.

    Args:
        a, b: (m, P) arrays of the same dtype.
    Returns:
        (m, m) ``a bᴴ``.
    """
    m = a.shape[0]
    n_blocks = min(GRAM_BLOCKS, m // GRAM_MIN_BLOCK)
    if n_blocks < 2 or m * m * a.shape[1] < GRAM_MIN_WORK:
        return a @ b.conj().T
    edges = [m * i // n_blocks for i in range(n_blocks + 1)]
    a_rows = [a[lo:hi] for lo, hi in zip(edges, edges[1:], strict=False)]
    b_rows = [b[lo:hi] for lo, hi in zip(edges, edges[1:], strict=False)]
    upper = {
        (i, j): a_rows[i] @ b_rows[j].conj().T
        for i in range(n_blocks)
        for j in range(i, n_blocks)
    }
    return jnp.block(
        [
            [upper[i, j] if j >= i else upper[j, i].conj().T for j in range(n_blocks)]
            for i in range(n_blocks)
        ]
    )


def adjoint_times(X: jax.Array, y: jax.Array) -> jax.Array:
    """``X.conj().T @ y`` as a vector-matrix product (no transposed copy of X).

    Args:
        X: (m, P); y: (m,).
    Returns:
        (P,) Xᴴ y.
    """
    if jnp.iscomplexobj(X):
        return jnp.conj(jnp.conj(y) @ X)
    return y @ X


def solve_dense(X: jax.Array, g: jax.Array, shift, scale=None) -> jax.Array:
    """Solve (XᵀX + D) x = g with S formed explicitly.

    Cholesky first; if it yields non-finite numbers (S + D not positive definite, e.g.
    a singular S with zero shift), an eigendecomposition pseudo-inverse is used.

    Args:
        X: (m, P) float64 real-formulation centred Jacobian (rows / √n); complex128
            (the holomorphic formulation) is accepted too, with S = X†X.
        g: (P,) right-hand side, dtype of ``X``.
        shift: absolute diagonal shift (scalar).
        scale: relative shift (adds ``scale · diag(S)``) or None.
    Returns:
        (P,) solution, dtype of ``X``.
    """
    xh = X.conj().T
    s = hermitian_product(xh, xh)
    a = s + jnp.diag(_regulariser(jnp.real(jnp.diag(s)), shift, scale))
    return psd_solve(a, g)


def solve_minsr(X: jax.Array, eps: jax.Array, shift, scale=None) -> jax.Array:
    """Kernel (minSR) form: x = D⁻¹Xᵀ (X D⁻¹ Xᵀ + I)⁻¹ eps = (XᵀX + D)⁻¹ Xᵀ eps.

    With ``D = shift · I`` this is ``Xᵀ (XXᵀ + shift)⁻¹ eps``. Cost O(m²P + m³).

    Args:
        X: (m, P) float64 real-formulation centred Jacobian (rows / √n); complex128
            is accepted too (Xᵀ becomes X†).
        eps: (m,) right-hand side in sample space (``G = X† eps``).
        shift: absolute diagonal shift (scalar, > 0 unless ``X`` has full row rank).
        scale: relative shift or None.
    Returns:
        (P,) solution, dtype of ``X``.
    """
    if scale is None:
        k = hermitian_product(X, X)
        k = k + shift * jnp.eye(k.shape[0], dtype=k.dtype)
        return adjoint_times(X, psd_solve(k, eps))
    d_inv = 1.0 / _regulariser(jnp.sum(jnp.abs(X) ** 2, axis=0), shift, scale)
    xd = X * d_inv
    k = hermitian_product(xd, X) + jnp.eye(X.shape[0], dtype=X.dtype)
    return adjoint_times(xd, psd_solve(k, eps))


def psd_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """Solve a Hermitian positive (semi-)definite system a x = b.

    Cholesky first; if it yields non-finite numbers (a singular), the
    eigendecomposition pseudo-inverse. Both LAPACK calls want column-major input:
    they get ``aᵀ = conj(a)``, which for a row-major ``a`` is a free relayout (a
    transposing copy of a 1024 × 1024 kernel costs a fifth of its Cholesky solve
    on CPU), and solve ``conj(a) conj(x) = conj(b)``. (An SVD-based ``pinv`` in the
    untaken branch would cost a third of the solve; ``eigh`` does not.)
    """
    a_conj, b_conj = a.T, jnp.conj(b)
    factor = jax.scipy.linalg.cho_factor(a_conj, lower=True)
    x_conj = jax.scipy.linalg.cho_solve(factor, b_conj)

    def pinv_solve(_):
        w, v = jnp.linalg.eigh(a_conj)
        cutoff = jnp.finfo(a.dtype).eps * a.shape[0] * jnp.max(jnp.abs(w))
        w_inv = jnp.where(jnp.abs(w) > cutoff, 1.0 / jnp.where(w == 0, 1.0, w), 0.0)
        return v @ (w_inv * (v.conj().T @ b_conj))

    ok = jnp.all(jnp.isfinite(x_conj))
    return jnp.conj(jax.lax.cond(ok, lambda _: x_conj, pinv_solve, None))


def solve_cg(
    matvec: Callable[[jax.Array], jax.Array],
    g: jax.Array,
    shift,
    *,
    tol: float = 1e-8,
    maxiter: int | None = None,
    x0: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Conjugate gradient for (S + shift) x = g with S given as a closure.

    Args:
        matvec: v (P,) -> S v (P,), S symmetric positive semi-definite.
        g: (P,) float64 right-hand side.
        shift: absolute diagonal shift.
        tol: relative residual tolerance.
        maxiter: iteration cap (None: jax's default, 10 P).
        x0: optional initial guess.
    Returns:
        (x (P,), relative residual ||(S + shift) x − g|| / ||g||).
    """

    def op(v):
        return matvec(v) + shift * v

    x, _ = jax.scipy.sparse.linalg.cg(op, g, x0=x0, tol=tol, maxiter=maxiter)
    res = jnp.linalg.norm(op(x) - g) / jnp.maximum(jnp.linalg.norm(g), 1e-300)
    return x, res


def column_runs(idx) -> list[slice]:
    """Contiguous runs of a sorted static index array, as slices."""
    idx = np.asarray(idx)
    cuts = np.flatnonzero(np.diff(idx) != 1) + 1
    return [slice(int(r[0]), int(r[-1]) + 1) for r in np.split(idx, cuts) if r.size]


def take_columns(X: jax.Array, idx) -> jax.Array:
    """``X[:, idx]`` for a static index array, as contiguous slices where it has runs.

    (A gather of 2048 × 168 columns costs ~5 ms on CPU; the slices of the same
    columns, one per parameter leaf, a fraction of that.)
    """
    runs = column_runs(idx)
    if not runs:
        return X[:, np.asarray(idx)]
    parts = [X[:, r] for r in runs]
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)


def holomorphic_solve(
    X: jax.Array, eps: jax.Array, split, solver: str, shift, diag_scale=None
) -> jax.Array:
    """The real system solved as the equivalent complex one, (S_c + D) δ = 2F.

    For a holomorphic ansatz the real-formulation S has the block form
    [[Re S_c, −Im S_c], [Im S_c, Re S_c]], i.e. it is S_c = <ΔO†ΔO> acting on
    δx + iδy; the complex system has half the size (about half the cost).
    """
    n = X.shape[0] // 2
    ox = take_columns(X, split[0])
    oc = jax.lax.complex(ox[:n], ox[n:])  # ΔO / √n, (n, P_c)
    ec = jax.lax.complex(eps[:n], eps[n:])
    if solver == "dense":
        d = solve_dense(oc, 2.0 * adjoint_times(oc, ec), shift, diag_scale)
    else:
        d = solve_minsr(oc, 2.0 * ec, shift, diag_scale)
    x = jnp.zeros(X.shape[1], dtype=X.dtype)
    return x.at[split[0]].set(d.real).at[split[1]].set(d.imag)


def gram_solve(model, params, sigma, residual, shift, holomorphic: bool, weights=None):
    """minSR through the model's Gram matrix: x = Xᵀ (X Xᵀ + shift)⁻¹ 2e.

    X = ΔO / √n in the model's own parameters (real, or complex for a holomorphic
    model, where this is the half-size complex system of :func:`holomorphic_solve`),
    so X Xᵀ = H G H / n with G the Gram matrix and H the centring projector, and
    Xᵀ c = (1/√n) Σ_a O_a* (c_a − mean c) is one vector-Jacobian product of log ψ
    (conjugated around it in the holomorphic case).

    With per-sample ``weights`` w (n,) summing to one, X = W^½ (I − 1wᵀ) O, so the
    kernel is W^½ (I − 1wᵀ) G (I − w1ᵀ) W^½, e = W^½ (r − Σ w r) and
    Xᵀ c = O† (√w c − w Σ √w c); rows of zero weight must hold finite samples
    (``nqs.vstate.safe_rows``).

    Returns:
        (x pytree like params, () norm of the right-hand side G = 2 Xᵀ e).
    """
    n = sigma.shape[0]
    gram = model.log_derivative_gram(params, sigma)
    r = residual.reshape(-1)
    if weights is None:
        gram = gram - jnp.mean(gram, axis=0, keepdims=True)
        gram = gram - jnp.mean(gram, axis=1, keepdims=True)
        kernel = gram / n + shift * jnp.eye(n, dtype=gram.dtype)
        e = (r - jnp.mean(r)) / jnp.sqrt(n)
    else:
        w = weights.reshape(-1)
        sqrt_w = jnp.sqrt(w)
        gram = gram - (w @ gram)[None, :]  # (I − 1wᵀ) G
        gram = gram - (gram @ w)[:, None]  # ... (I − w1ᵀ)
        kernel = sqrt_w[:, None] * gram * sqrt_w[None, :]
        kernel = kernel + shift * jnp.eye(n, dtype=gram.dtype)
        r = jnp.where(w != 0, r, 0)
        e = sqrt_w * (r - jnp.sum(w * r))
    e = e if holomorphic else jnp.real(e)
    y = psd_solve(kernel, 2.0 * e)
    _, vjp = jax.vjp(lambda p: jnp.asarray(model.apply(p, sigma)), params)

    def centre(c):  # the cotangent of log ψ giving Xᵀ c
        if weights is None:
            return (c - jnp.mean(c)) / jnp.sqrt(n)
        c = sqrt_w * c
        return c - w * jnp.sum(c)

    def xt(c):  # Xᵀ c
        c = centre(c)
        if holomorphic:
            return jax.tree_util.tree_map(jnp.conj, vjp(jnp.conj(c))[0])
        return vjp(c.astype(gram.dtype))[0]

    both = jax.vmap(xt)(jnp.stack([y, 2.0 * e]))
    x = jax.tree_util.tree_map(lambda a: a[0], both)
    g_sq = sum(jnp.sum(jnp.abs(a[1]) ** 2) for a in jax.tree_util.tree_leaves(both))
    return x, jnp.sqrt(g_sq)
