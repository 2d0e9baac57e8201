"""Exact diagonalisation and dynamics in the full (constrained) basis.

Matrices come from ``nqs.operator.sparse_matrix`` (``LocalOperator.to_sparse``).
``ground_state`` uses deflated two-pass Lanczos iterations for a few low states (no
threaded BLAS calls, which stall on busy machines), scipy's ``eigsh`` for many states
and dense ``eigh`` for tiny spaces.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from nqs.operator import LocalOperator, sparse_matrix

DEFAULT_MAX_STATES = 40_000_000
_DENSE_LIMIT = 200  # spaces smaller than this are diagonalised densely
_LANCZOS_MAX_K = 8  # more states use scipy's eigsh

__all__ = [
    "DEFAULT_MAX_STATES",
    "check_size",
    "estimate_memory",
    "evolve",
    "observable_traces",
    "expectation",
    "ground_state",
    "sparse_matrix",
]


# -- sizes -----------------------------------------------------------------------------
def estimate_memory(hilbert, op: LocalOperator) -> int:
    """Upper bound in bytes of the memory to build and diagonalise ``op``'s matrix.

    Counts the CSR matrix (at most ``n_conn`` entries per row) twice (chunks and the
    joined arrays), the basis configurations and about ten solver vectors.

    Args:
        hilbert: the Hilbert space (``op.hilbert``).
        op: the operator.
    Returns:
        number of bytes (int).
    """
    n_states = int(hilbert.n_states)
    item = np.dtype(op.dtype).itemsize
    csr = n_states * op.n_conn * (item + 4) + 4 * (n_states + 1)
    return 2 * csr + n_states * hilbert.n_sites + 10 * n_states * 16


def check_size(op: LocalOperator, max_states: int | None = DEFAULT_MAX_STATES) -> None:
    """Raise ValueError if ``op``'s space has more than ``max_states`` states.

    Args:
        op: the operator.
        max_states: largest dimension allowed; None for no limit.
    Raises:
        ValueError: with the dimension and the memory estimate.
    """
    n_states = op.hilbert.n_states
    if max_states is not None and n_states > max_states:
        gigabytes = estimate_memory(op.hilbert, op) / 1e9
        raise ValueError(
            f"system too large for exact diagonalisation: {n_states} states would "
            f"need ~{gigabytes:.3g} GB (limit max_states={max_states})"
        )


def _as_matrix(op):
    """Sparse matrix of a LocalOperator; sparse or dense matrices pass through."""
    return sparse_matrix(op) if isinstance(op, LocalOperator) else op


# -- ground state ----------------------------------------------------------------------
def _dot(a: np.ndarray, b: np.ndarray):
    """<a|b> without BLAS (single-threaded, so it does not stall on a busy machine)."""
    return np.einsum("i,i->", a.conj() if np.iscomplexobj(a) else a, b)


def _lanczos_pass(matrix, v0, n_iter, found, coeffs=None, tol=1e-9):
    """Lanczos recurrence from ``v0`` on the complement of the ``found`` vectors.

    Without ``coeffs``: runs until the lowest Ritz pair has residual below
    ``tol * max(1, |E|)`` (or ``n_iter`` steps) and returns the tridiagonal
    (alphas, betas) and whether it converged. With ``coeffs`` (the Ritz vector of
    an earlier pass from the same ``v0``): rebuilds the same basis and returns
    ``sum_j coeffs[j] v_j``.
    """

    def project(x):
        for q in found:
            x -= _dot(q, x) * q
        return x

    v = project(v0.copy())
    v /= np.sqrt(_dot(v, v).real)
    v_prev = np.zeros_like(v)
    alphas, betas, beta = [], [], 0.0
    out = np.zeros_like(v)
    for j in range(n_iter):
        if coeffs is not None:
            out += coeffs[j] * v
            if j == len(coeffs) - 1:
                return out
        w = project(matrix @ v)
        alpha = _dot(v, w).real
        w -= alpha * v
        w -= beta * v_prev
        beta = np.sqrt(_dot(w, w).real)
        alphas.append(alpha)
        if coeffs is None and (j >= 4 or beta < 1e-12):
            energies, vecs = scipy.linalg.eigh_tridiagonal(
                np.array(alphas), np.array(betas), select="i", select_range=(0, 0)
            )
            if beta * abs(vecs[-1, 0]) < tol * max(1.0, abs(energies[0])):
                return np.array(alphas), np.array(betas), True
        if beta < 1e-12:
            return np.array(alphas), np.array(betas), True
        betas.append(beta)
        v_prev, v = v, w / beta
    return np.array(alphas), np.array(betas), False


def _lanczos_lowest(matrix, k: int, max_iter: int = 3000, seed: int = 0):
    """Lowest ``k`` eigenpairs by deflated two-pass Lanczos (None if not converged).

    Each state is the lowest eigenpair of H on the complement of those found before.
    A pass stores no basis and does not reorthogonalise; stopping as soon as the lowest
    Ritz pair converges keeps spurious copies away, and a second pass from the same
    start vector rebuilds the basis to assemble the Ritz vector.
    """
    n = matrix.shape[0]
    dtype = np.result_type(matrix.dtype, np.float64)
    keys = jax.random.split(jax.random.key(seed), k)
    found, energies = [], []
    for key in keys:
        v0 = np.asarray(jax.random.normal(key, (n,), jnp.float64)).astype(dtype)
        alphas, betas, converged = _lanczos_pass(matrix, v0, min(max_iter, n), found)
        if not converged:
            return None
        _, vecs = scipy.linalg.eigh_tridiagonal(
            alphas, betas[: len(alphas) - 1], select="i", select_range=(0, 0)
        )
        psi = _lanczos_pass(matrix, v0, len(alphas), found, coeffs=vecs[:, 0])
        for q in found:  # remove the rounding-level overlap with earlier states
            psi -= _dot(q, psi) * q
        psi /= np.sqrt(_dot(psi, psi).real)
        found.append(psi)
        energies.append(_dot(psi, matrix @ psi).real)
    order = np.argsort(energies)
    return np.array(energies)[order], np.stack(found, axis=1)[:, order]


def ground_state(
    op, k: int = 1, max_states: int | None = DEFAULT_MAX_STATES
) -> tuple[np.ndarray, np.ndarray]:
    """Lowest ``k`` eigenvalues and eigenvectors of a Hermitian operator.

    Args:
        op: ``LocalOperator`` (or a sparse/dense Hermitian matrix).
        k: number of states.
        max_states: refuse (ValueError) larger spaces; None for no limit.
    Returns:
        energies: (k,) float64 ascending.
        vectors: (n_states, k) float64 or complex128, orthonormal columns in the
        basis of ``hilbert.all_states()``.
    Raises:
        ValueError: if the space is too large or ``k`` is not in 1..n_states.
    """
    if isinstance(op, LocalOperator):
        check_size(op, max_states)
    matrix = _as_matrix(op)
    n = matrix.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n} (the dimension), got {k}")
    if n < _DENSE_LIMIT or k >= n - 1:
        dense = matrix.toarray() if scipy.sparse.issparse(matrix) else matrix
        energies, vectors = np.linalg.eigh(dense)
        return energies[:k], vectors[:, :k]
    result = _lanczos_lowest(matrix, k) if k <= _LANCZOS_MAX_K else None
    if result is not None:
        return result
    energies, vectors = scipy.sparse.linalg.eigsh(matrix, k=k, which="SA")
    order = np.argsort(energies)
    return energies[order], vectors[:, order]


# -- observables and dynamics ----------------------------------------------------------
def expectation(op, psi: np.ndarray) -> complex:
    """<psi|op|psi> / <psi|psi>.

    Args:
        op: ``LocalOperator`` or matrix on the same basis.
        psi: (n_states,) state vector (need not be normalised).
    Returns:
        complex expectation value.
    """
    psi = np.asarray(psi)
    return complex(np.vdot(psi, _as_matrix(op) @ psi) / np.vdot(psi, psi))


def evolve(op, psi0: np.ndarray, times, *, imaginary: bool = False) -> np.ndarray:
    """psi(t) = exp(-i H t) psi0 at each of ``times`` (t = 0 is ``psi0``).

    With ``imaginary`` the evolution is exp(-H t) psi0, normalised at every time (the
    unnormalised vector under- or overflows; the norm carries no information here).

    Args:
        op: ``LocalOperator`` (or sparse matrix) H.
        psi0: (n_states,) initial state.
        times: (n_times,) ascending times >= 0.
        imaginary: imaginary-time evolution.
    Returns:
        (n_times, n_states) complex128 states.
    """
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    if np.any(np.diff(times) < 0) or (times.size and times[0] < 0):
        raise ValueError("times must be ascending and >= 0")
    matrix = scipy.sparse.csr_matrix(_as_matrix(op))
    generator = -matrix if imaginary else -1j * matrix
    psi = np.asarray(psi0, dtype=np.complex128)
    out = np.empty((times.size, psi.size), dtype=np.complex128)
    t_prev = 0.0
    for n, t in enumerate(times):
        if t > t_prev:
            psi = scipy.sparse.linalg.expm_multiply(generator * (t - t_prev), psi)
            if imaginary:
                psi = psi / np.linalg.norm(psi)
        out[n] = psi
        t_prev = t
    return out


def observable_traces(
    hamiltonian, psi0: np.ndarray, times, observables=(), *, imaginary: bool = False
) -> dict[str, np.ndarray]:
    """Exact ⟨H⟩(t) and ⟨O⟩(t) of the evolution of ``psi0`` on the grid ``times``.

    Args:
        hamiltonian: ``LocalOperator`` generating the evolution.
        psi0: (n_states,) initial state (normalised here).
        times: (n_times,) ascending times >= 0.
        observables: ((name, LocalOperator), ...).
        imaginary: imaginary-time evolution (see :func:`evolve`).
    Returns:
        {"t": (n_times,) float64, "energy": (n_times,) float64, name: (n_times,)
        float64 (Hermitian) or complex128}.
    """
    psi0 = np.asarray(psi0, dtype=np.complex128)
    psi0 = psi0 / np.linalg.norm(psi0)
    states = evolve(hamiltonian, psi0, times, imaginary=imaginary)
    out = {"t": np.asarray(times, dtype=np.float64)}
    for name, op in (("energy", hamiltonian), *observables):
        matrix = scipy.sparse.csr_matrix(_as_matrix(op))
        values = np.einsum("ti,ti->t", states.conj(), (matrix @ states.T).T)
        hermitian = abs(matrix - matrix.getH()).max() <= 1e-12 if matrix.nnz else True
        out[name] = values.real.copy() if hermitian else values
    return out
