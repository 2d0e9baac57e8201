"""Exact diagonalisation and dynamics in the full (constrained) basis.

``sparse_matrix`` builds the CSR matrix of a ``LocalOperator`` in jitted chunks of basis
states: each connection's basis index comes from block ranking tables (the sites are
split into a few blocks of at most 2^12 local configurations; the index is a sum of one
table entry per block), so no connected configuration is ever materialised.
``ground_state`` uses deflated two-pass Lanczos iterations for a few low states (no
threaded BLAS calls, which stall on busy machines), scipy's ``eigsh`` for many states
and dense ``eigh`` for tiny spaces.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from nqs.operator import LocalOperator, connections

DEFAULT_MAX_STATES = 40_000_000
_DENSE_LIMIT = 200  # spaces smaller than this are diagonalised densely
_LANCZOS_MAX_K = 8  # more states use scipy's eigsh
_BLOCK_BITS = 12  # at most 2^12 local configurations per ranking block
_INT64_CAP = 2**62


class _Ranker(NamedTuple):
    """Block ranking tables of a Hilbert space (see ``_ranker``)."""

    bounds: tuple[tuple[int, int], ...]  # (start, stop) sites of each block
    weights: np.ndarray  # (n_sites,) int32: d^(stop - 1 - i) inside the block of i
    block_of: np.ndarray  # (n_sites,) int32 block of each site
    tables: tuple[np.ndarray, ...]  # per block (R + 1, D_p) int64, or (1, D_p)
    digit_sums: tuple[np.ndarray, ...]  # per block (D_p,) int32
    total: int | None  # required sum of local indices


def _index_sum(hilbert) -> int | None:
    if hilbert.constraint_sum is None:
        return None
    values = hilbert.local_values
    step = values[1] - values[0]
    return (hilbert.constraint_sum - values[0] * hilbert.n_sites) // step


def _ranker(hilbert) -> _Ranker:
    """Tables giving the basis index as a sum of one lookup per block of sites.

    With the required index sum R, the index of a state is ``sum_p T_p[r_p, u_p]``
    where ``u_p`` is the key (local indices as base-d digits) of block p, ``r_p`` the
    index sum left before block p, and ``T_p[r, u]`` the number of basis completions
    of all blocks after p over block keys smaller than ``u``.
    """
    n, d, total = hilbert.n_sites, hilbert.local_size, _index_sum(hilbert)
    size = max(1, int(_BLOCK_BITS // np.log2(d)))
    n_blocks = -(-n // size)
    cuts = np.linspace(0, n, n_blocks + 1).round().astype(int)
    bounds = tuple((int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True))
    weights = np.zeros(n, dtype=np.int32)
    block_of = np.zeros(n, dtype=np.int32)
    r_max = 0 if total is None else total
    counts = np.zeros((n + 1, r_max + 1), dtype=object)  # strings of m digits, sum r
    counts[0, 0] = 1
    for m in range(1, n + 1):
        for j in range(d):
            counts[m, j:] += counts[m - 1, : r_max + 1 - j]
    counts = np.minimum(counts, _INT64_CAP).astype(np.int64)
    tables, digit_sums = [], []
    for p, (a, b) in enumerate(bounds):
        weights[a:b] = d ** np.arange(b - a - 1, -1, -1)
        block_of[a:b] = p
        keys = np.arange(d ** (b - a))
        digits = (keys[:, None] // weights[None, a:b]) % d
        dsum = digits.sum(axis=1).astype(np.int32)
        if total is None:
            table = (keys * d ** (n - b))[None, :].astype(np.int64)
        else:
            rest = np.arange(r_max + 1)[:, None] - dsum[None, :]
            completions = np.where(rest >= 0, counts[n - b][np.clip(rest, 0, r_max)], 0)
            table = np.cumsum(completions, axis=1) - completions
        tables.append(table)
        digit_sums.append(dsum)
    return _Ranker(bounds, weights, block_of, tuple(tables), tuple(digit_sums), total)


def _rank(ranker: _Ranker, keys) -> jax.Array:
    """Basis index from block keys (list of int32 arrays), -1 if not in the basis."""
    rank = jnp.zeros(keys[0].shape, dtype=jnp.int64)
    remaining = None if ranker.total is None else jnp.full(keys[0].shape, ranker.total)
    for key, table, dsum in zip(keys, ranker.tables, ranker.digit_sums, strict=True):
        if remaining is None:
            rank = rank + jnp.take(table[0], key, mode="clip")
            continue
        row = jnp.clip(remaining, 0, table.shape[0] - 1)
        rank = rank + jnp.take(table.ravel(), row * table.shape[1] + key, mode="clip")
        remaining = remaining - jnp.take(dsum, key, mode="clip")
    return rank if remaining is None else jnp.where(remaining == 0, rank, -1)


@functools.partial(jax.jit, static_argnums=0)
def _sparse_rows(op: LocalOperator, states: jax.Array, start: jax.Array):
    """Columns and elements of the rows ``start + arange(C)`` given their states.

    Returns:
        cols: (C, n_conn) int32, -1 for dropped slots (zero element or outside the
        basis). mels: (C, n_conn) matrix elements.
    """
    ranker = _ranker(op.hilbert)
    idx = op.hilbert.values_to_indices(states)  # (C, N) int32
    keys = [
        jnp.sum(idx[:, a:b] * ranker.weights[a:b], axis=-1) for a, b in ranker.bounds
    ]
    diag, conns = connections(op, idx)
    n_rows = states.shape[0]
    cols = [(start + jnp.arange(n_rows))[:, None]]
    mels = [diag[:, None]]
    for g, (old, new, mel) in zip(op._groups, conns, strict=True):
        if new.shape[2] == 0:
            continue
        delta = new - old[:, :, None, :]  # (C, T, m, k)
        block = ranker.block_of[g.sites]  # (T, k)
        weight = ranker.weights[g.sites]
        new_keys = [
            key[:, None, None]
            + jnp.sum(delta * np.where(block == p, weight, 0)[None, :, None, :], -1)
            for p, key in enumerate(keys)
        ]
        cols.append(_rank(ranker, new_keys).reshape(n_rows, -1))
        mels.append(mel.reshape(n_rows, -1))
    cols = jnp.concatenate(cols, axis=1)
    mels = jnp.concatenate(mels, axis=1)
    return jnp.where((cols < 0) | (mels == 0), -1, cols).astype(jnp.int32), mels


def _may_repeat(op: LocalOperator) -> bool:
    """Whether two terms can connect a state to the same state (duplicate entries).

    Two terms produce the same connected state only if some transition of each
    changes exactly the same set of sites.
    """
    d, seen = op.hilbert.local_size, set()
    for sites, matrix in op.terms:
        k = len(sites)
        powers = d ** np.arange(k - 1, -1, -1)
        rows, cols = np.nonzero(matrix)
        off = rows != cols
        changed = (rows[off, None] // powers) % d != (cols[off, None] // powers) % d
        patterns = {tuple(np.array(sites)[c]) for c in changed}
        if seen & patterns:
            return True
        seen |= patterns
    return False


def sparse_matrix(op: LocalOperator, chunk_size: int | None = None):
    """CSR matrix ``H[i, j] = <i|op|j>`` in the basis of ``hilbert.all_states()``.

    Args:
        op: the operator.
        chunk_size: basis states per jitted chunk (default ~2^22 / n_conn).
    Returns:
        (n_states, n_states) ``scipy.sparse.csr_matrix`` with int32 indices and
        ``op.dtype`` data; duplicates summed, zeros dropped.
    Raises:
        ValueError: if the number of entries cannot be indexed with int32.
    """
    n_states, n_conn = op.hilbert.n_states, op.n_conn
    if n_states * n_conn >= 2**31:
        raise ValueError(
            f"{n_states} states x {n_conn} connections exceed int32 sparse indexing"
        )
    if chunk_size is None:
        chunk_size = max(1024, (1 << 22) // n_conn)
    chunk_size = int(min(chunk_size, n_states))
    states = op.hilbert.all_states()
    data, indices, counts = [], [], []
    for start in range(0, n_states, chunk_size):
        chunk = states[start : start + chunk_size]
        n_valid = chunk.shape[0]
        if n_valid < chunk_size:  # pad to one compiled shape
            pad = np.broadcast_to(chunk[:1], (chunk_size - n_valid, chunk.shape[1]))
            chunk = np.concatenate([chunk, pad])
        cols, mels = _sparse_rows(op, jnp.asarray(chunk), start)
        cols, mels = np.asarray(cols)[:n_valid], np.asarray(mels)[:n_valid]
        keep = cols >= 0
        data.append(mels[keep])
        indices.append(cols[keep])
        counts.append(keep.sum(axis=1, dtype=np.int32))
    del states
    indptr = np.zeros(n_states + 1, dtype=np.int32)
    np.cumsum(np.concatenate(counts), out=indptr[1:])
    matrix = scipy.sparse.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), indptr),
        shape=(n_states, n_states),
    )
    if _may_repeat(op):
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
    return matrix


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
    return op.to_sparse() if isinstance(op, LocalOperator) else op


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


def evolve(op, psi0: np.ndarray, times) -> np.ndarray:
    """psi(t) = exp(-i H t) psi0 at each of ``times`` (t = 0 is ``psi0``).

    Args:
        op: ``LocalOperator`` (or sparse matrix) H.
        psi0: (n_states,) initial state.
        times: (n_times,) ascending times >= 0.
    Returns:
        (n_times, n_states) complex128 states.
    """
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    if np.any(np.diff(times) < 0) or (times.size and times[0] < 0):
        raise ValueError("times must be ascending and >= 0")
    generator = -1j * scipy.sparse.csr_matrix(_as_matrix(op))
    psi = np.asarray(psi0, dtype=np.complex128)
    out = np.empty((times.size, psi.size), dtype=np.complex128)
    t_prev = 0.0
    for n, t in enumerate(times):
        if t > t_prev:
            psi = scipy.sparse.linalg.expm_multiply(generator * (t - t_prev), psi)
        out[n] = psi
        t_prev = t
    return out
