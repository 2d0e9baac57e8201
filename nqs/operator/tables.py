"""Compiled term tables of a ``LocalOperator`` and the two kernels that read them.

The terms are grouped by (arity k, max off-diagonal entries per row m); a group's
tables give, for each local composite index of its sites, the diagonal entry and the m
connected indices with their matrix elements. ``connections`` looks them up for a batch
of configurations (``LocalOperator.get_conn`` builds on it); ``sparse_matrix`` builds
the CSR matrix in jitted chunks of basis states: each connection's basis index comes
from block ranking tables (the sites are split into a few blocks of at most 2^12
local configurations; the index is a sum of one table entry per block), so no
connected configuration is ever materialised.

Everything here reads an operator through the ``Tabulated`` protocol, so this module
does not import ``nqs.operator.local`` (which imports it).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

_BLOCK_BITS = 12  # at most 2^12 local configurations per ranking block
_INT64_CAP = 2**62


class TermGroup(NamedTuple):
    """Compiled tables of the T terms with arity k and m off-diagonal slots."""

    sites: np.ndarray  # (T, k) int32
    diag: np.ndarray  # (T, d^k) float64 | complex128, diagonal entries
    new_idx: np.ndarray  # (T, d^k, m) int32 connected local composite index
    mels: np.ndarray  # (T, d^k, m) off-diagonal entries, 0 in padding slots


class Tabulated(Protocol):
    """What the kernels read of an operator (``nqs.operator.LocalOperator``)."""

    hilbert: Any  # nqs.hilbert space: local_size, n_states, all_states, ...
    terms: tuple  # ((sites, (d^k, d^k) matrix), ...), normalised
    constant: complex

    @property
    def dtype(self) -> np.dtype: ...

    @property
    def n_conn(self) -> int: ...

    @property
    def groups(self) -> tuple[TermGroup, ...]: ...


def n_offdiag(matrix: np.ndarray) -> int:
    """Maximum number of non-zero off-diagonal entries in a row."""
    off = matrix != 0
    np.fill_diagonal(off, False)
    return int(off.sum(axis=1).max(initial=0))


def group_terms(terms, local_size: int, dtype) -> tuple[TermGroup, ...]:
    """Tables of the terms grouped by (arity k, off-diagonal entries per row m).

    Args:
        terms: ((sites, matrix), ...) normalised terms (``LocalOperator.terms``).
        local_size: local dimension d.
        dtype: float64 or complex128, dtype of the tables' matrix elements.
    Returns:
        one ``TermGroup`` per (k, m), sorted by (k, m).
    """
    d = local_size
    buckets: dict[tuple[int, int], list] = {}
    for sites, matrix in terms:
        buckets.setdefault((len(sites), n_offdiag(matrix)), []).append((sites, matrix))
    groups = []
    for (k, m), items in sorted(buckets.items()):
        size = d**k
        sites = np.array([s for s, _ in items], dtype=np.int32).reshape(-1, k)
        diag = np.stack([np.diagonal(mat) for _, mat in items]).astype(dtype)
        new_idx = np.broadcast_to(
            np.arange(size, dtype=np.int32)[None, :, None], (len(items), size, m)
        ).copy()
        mels = np.zeros((len(items), size, m), dtype=dtype)
        for t, (_, mat) in enumerate(items):
            off = mat.copy()
            np.fill_diagonal(off, 0)
            for row in range(size):
                cols = np.flatnonzero(off[row])
                new_idx[t, row, : cols.size] = cols
                mels[t, row, : cols.size] = off[row, cols]
        groups.append(TermGroup(sites, diag, new_idx, mels))
    return tuple(groups)


def connections(op: Tabulated, idx: jax.Array):
    """Diagonal elements and, per term group, the off-diagonal local transitions.

    Args:
        op: the operator.
        idx: (B, n_sites) int32 local indices of the configurations.
    Returns:
        diag: (B,) ``op.dtype`` diagonal elements (constant included).
        conns: one (old, new, mels) per group of ``op.groups``: old (B, T, k) int32
            local indices of the term's sites, new (B, T, m, k) int32 local indices
            after each off-diagonal transition (equal to old in padding slots), mels
            (B, T, m) matrix elements (0 in padding slots).
    """
    d = op.hilbert.local_size
    diag = jnp.full(idx.shape[:1], op.constant, dtype=op.dtype)
    conns = []
    for g in op.groups:
        n_terms, k = g.sites.shape
        size, m = g.diag.shape[1], g.new_idx.shape[2]
        powers = np.asarray(d ** np.arange(k - 1, -1, -1), dtype=np.int32)
        old = idx[:, g.sites]  # (B, T, k)
        row = jnp.sum(old * powers, axis=-1) + np.arange(n_terms, dtype=np.int32) * size
        diag = diag + jnp.sum(jnp.take(g.diag.ravel(), row, mode="clip"), axis=-1)
        if m == 0:
            empty = jnp.zeros(old.shape[:2] + (0,), dtype=op.dtype)
            conns.append((old, jnp.zeros(old.shape[:2] + (0, k), jnp.int32), empty))
            continue
        new = jnp.take(g.new_idx.reshape(-1, m), row, axis=0, mode="clip")
        mel = jnp.take(g.mels.reshape(-1, m), row, axis=0, mode="clip")
        conns.append((old, (new[..., None] // powers) % d, mel))
    return diag, conns


# -- sparse matrix ---------------------------------------------------------------------
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
def _sparse_rows(op: Tabulated, states: jax.Array, start: jax.Array):
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
    for g, (old, new, mel) in zip(op.groups, conns, strict=True):
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


def _may_repeat(op: Tabulated) -> bool:
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


def sparse_matrix(
    op: Tabulated, chunk_size: int | None = None
) -> scipy.sparse.csr_matrix:
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
