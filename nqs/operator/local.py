"""``LocalOperator``: sums of k-local terms, their algebra, and the common operators.

A ``LocalOperator`` is ``constant + sum_t O_t`` where each term ``O_t`` acts on a tuple
of sites with a dense ``(d^k, d^k)`` matrix in the local-index basis of those sites
(local index 0 is the smallest local value; the first site is the most significant
digit). Terms are normalised on construction: sites sorted, terms on the same site set
summed, terms on a subset of another term's sites folded into it (never more
connections), tiny entries and zero terms dropped. The compiled tables and the kernels
reading them (connections, sparse matrix) are in ``nqs.operator.tables``.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

from nqs.operator.tables import TermGroup, connections, group_terms, sparse_matrix

_REL_TOL = 1e-14  # entries below this times the largest entry count as zero


def _is_scalar(x) -> bool:
    return isinstance(x, numbers.Number) or (isinstance(x, np.ndarray) and x.ndim == 0)


def _embed(sites, matrix: np.ndarray, target, d: int) -> np.ndarray:
    """Matrix of ``matrix`` (acting on ``sites``) in the basis of ``target`` sites.

    Args:
        sites: tuple of k distinct sites, all in ``target``.
        matrix: (d^k, d^k) matrix; first site = most significant local digit.
        target: tuple of K distinct sites.
        d: local dimension.
    Returns:
        (d^K, d^K) matrix ``matrix ⊗ 1`` with factors ordered as ``target``.
    """
    k, big_k = len(sites), len(target)
    rest = [s for s in target if s not in sites]
    full = np.kron(matrix, np.eye(d ** (big_k - k), dtype=matrix.dtype))
    order = list(sites) + rest
    perm = [order.index(s) for s in target]
    tensor = full.reshape((d,) * (2 * big_k))
    tensor = tensor.transpose(perm + [big_k + p for p in perm])
    return tensor.reshape(d**big_k, d**big_k)


def _clean(matrix: np.ndarray, atol: float) -> np.ndarray:
    """Zero entries below ``atol``; return a real array when the imaginary part is 0."""
    matrix = np.where(np.abs(matrix) <= atol, 0, matrix)
    if np.iscomplexobj(matrix):
        matrix.real[np.abs(matrix.real) <= atol] = 0
        matrix.imag[np.abs(matrix.imag) <= atol] = 0
        if not np.any(matrix.imag):
            matrix = matrix.real.copy()
    return matrix.astype(np.complex128 if np.iscomplexobj(matrix) else np.float64)


def _normalise(hilbert, terms, constant):
    """Validate and canonicalise terms; return (terms tuple, constant)."""
    d, n = hilbert.local_size, hilbert.n_sites
    merged: dict[tuple[int, ...], np.ndarray] = {}
    for sites, matrix in terms:
        sites = (sites,) if isinstance(sites, numbers.Integral) else tuple(sites)
        sites = tuple(int(s) for s in sites)
        if any(not 0 <= s < n for s in sites):
            raise ValueError(f"sites {sites} out of range 0..{n - 1}")
        if len(set(sites)) != len(sites):
            raise ValueError(f"sites {sites} must be distinct")
        matrix = np.asarray(matrix)
        size = d ** len(sites)
        if matrix.shape != (size, size):
            raise ValueError(
                f"a term on {len(sites)} site(s) of local dimension {d} needs a "
                f"({size}, {size}) matrix, got shape {matrix.shape}"
            )
        matrix = matrix.astype(np.result_type(matrix.dtype, np.float64))
        if not sites:
            constant = constant + matrix[0, 0]
            continue
        key = tuple(sorted(sites))
        matrix = _embed(sites, matrix, key, d)
        merged[key] = merged[key] + matrix if key in merged else matrix
    # Fold each term into the smallest (then first) term whose sites contain its own.
    by_site: dict[int, list[tuple[int, ...]]] = {}
    for key in merged:
        for s in key:
            by_site.setdefault(s, []).append(key)
    for key in sorted(merged, key=lambda k: (len(k), k)):
        supersets = [
            other
            for other in by_site[key[0]]
            if len(other) > len(key) and other in merged and set(key) <= set(other)
        ]
        if supersets:
            target = min(supersets, key=lambda k: (len(k), k))
            merged[target] = merged[target] + _embed(key, merged.pop(key), target, d)
    scale = max([1.0] + [float(np.abs(m).max(initial=0)) for m in merged.values()])
    out = []
    for key in sorted(merged, key=lambda k: (len(k), k)):
        matrix = _clean(merged[key], _REL_TOL * scale)
        if np.any(matrix):
            out.append((key, matrix))
    constant = complex(constant)
    constant = constant.real if abs(constant.imag) <= _REL_TOL * scale else constant
    return tuple(out), constant


@dataclasses.dataclass(frozen=True, eq=False)
class LocalOperator:
    """Sum of k-local terms plus a constant on a discrete Hilbert space.

    Hashed by identity, so it is a valid static jit argument; its tables become
    compile-time constants.

    Attributes:
        hilbert: ``nqs.hilbert.Spin`` or ``Fock`` space the operator acts on.
        terms: ((sites, matrix), ...) with sorted sites and (d^k, d^k) float64 or
            complex128 matrices in the local-index basis (normalised on construction).
        constant: multiple of the identity.
    """

    hilbert: object
    terms: tuple = ()
    constant: complex = 0.0

    def __post_init__(self):
        terms, constant = _normalise(self.hilbert, self.terms, self.constant)
        object.__setattr__(self, "terms", terms)
        object.__setattr__(self, "constant", constant)

    # -- algebra -----------------------------------------------------------------------
    @property
    def dtype(self):
        """float64 if every matrix and the constant are real, else complex128."""
        is_complex = isinstance(self.constant, complex) or any(
            np.iscomplexobj(m) for _, m in self.terms
        )
        return np.dtype(np.complex128 if is_complex else np.float64)

    def _check_same_space(self, other: LocalOperator) -> None:
        if other.hilbert != self.hilbert:
            raise ValueError(
                "operators act on different Hilbert spaces: "
                f"{self.hilbert} and {other.hilbert}"
            )

    def __add__(self, other):
        if _is_scalar(other):
            return LocalOperator(self.hilbert, self.terms, self.constant + other)
        if not isinstance(other, LocalOperator):
            return NotImplemented
        self._check_same_space(other)
        return LocalOperator(
            self.hilbert, self.terms + other.terms, self.constant + other.constant
        )

    __radd__ = __add__

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        if not (_is_scalar(other) or isinstance(other, LocalOperator)):
            return NotImplemented
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        if _is_scalar(other):
            terms = tuple((s, m * other) for s, m in self.terms)
            return LocalOperator(self.hilbert, terms, self.constant * other)
        if isinstance(other, LocalOperator):
            return self @ other
        return NotImplemented

    def __rmul__(self, other):
        if _is_scalar(other):
            return self * other
        return NotImplemented

    def __truediv__(self, other):
        if _is_scalar(other):
            return self * (1.0 / other)
        return NotImplemented

    def __matmul__(self, other):
        """Operator product ``self · other``."""
        if not isinstance(other, LocalOperator):
            return NotImplemented
        self._check_same_space(other)
        d = self.hilbert.local_size
        terms = [(s, m * other.constant) for s, m in self.terms]
        terms += [(s, self.constant * m) for s, m in other.terms]
        for sites_a, mat_a in self.terms:
            for sites_b, mat_b in other.terms:
                union = tuple(sorted(set(sites_a) | set(sites_b)))
                product = _embed(sites_a, mat_a, union, d) @ _embed(
                    sites_b, mat_b, union, d
                )
                terms.append((union, product))
        return LocalOperator(self.hilbert, tuple(terms), self.constant * other.constant)

    @property
    def H(self) -> LocalOperator:  # noqa: N802 (conventional name of the adjoint)
        """Hermitian adjoint."""
        terms = tuple((s, m.conj().T) for s, m in self.terms)
        return LocalOperator(self.hilbert, terms, np.conj(self.constant))

    def is_hermitian(self) -> bool:
        """Whether the operator equals its adjoint (up to the cleaning tolerance)."""
        diff = self - self.H
        return not diff.terms and diff.constant == 0

    # -- compiled tables ---------------------------------------------------------------
    @functools.cached_property
    def groups(self) -> tuple[TermGroup, ...]:
        """Compiled tables of the terms (see ``nqs.operator.tables.group_terms``)."""
        return group_terms(self.terms, self.hilbert.local_size, self.dtype)

    @functools.cached_property
    def has_empty_slots(self) -> bool:
        """Whether some off-diagonal slot of ``get_conn`` has a zero element for some
        configuration (padding of a term with fewer transitions from that local state,
        as for a spin exchange of two parallel spins); if not, every off-diagonal slot
        always carries a nonzero element and a different configuration."""
        return any(g.mels.size and np.any(g.mels == 0) for g in self.groups)

    @property
    def n_conn(self) -> int:
        """Number of connection slots per configuration (diagonal included)."""
        return 1 + sum(g.sites.shape[0] * g.new_idx.shape[2] for g in self.groups)

    # -- connections -------------------------------------------------------------------
    def get_conn(self, sigma) -> tuple[jax.Array, jax.Array]:
        """Connected configurations and matrix elements ``<sigma|O|sigma_p>``.

        Args:
            sigma: (..., n_sites) int8 configurations.
        Returns:
            sigma_p: (..., n_conn, n_sites) int8; slot 0 is ``sigma`` itself.
            mels: (..., n_conn) float64 or complex128 (``self.dtype``); slot 0 is the
            diagonal element; padding slots have mel 0 and ``sigma_p == sigma``.
            Jittable (vectorised over the batch axes).
        """
        hilbert = self.hilbert
        sigma = jnp.asarray(sigma, dtype=jnp.int8)
        batch, n = sigma.shape[:-1], sigma.shape[-1]
        flat = sigma.reshape(-1, n)
        n_batch = flat.shape[0]
        diag, conns = connections(self, hilbert.values_to_indices(flat))
        sigma_p, mels = [flat[:, None, :]], [diag[:, None]]
        for g, (_, new, mel) in zip(self.groups, conns, strict=True):
            n_terms, k = g.sites.shape
            m = new.shape[2]
            if m == 0:
                continue
            # overwrite the k sites of each term with their new values
            values = hilbert.indices_to_values(new)  # (B, T, m, k) int8
            site_ax = np.arange(n, dtype=np.int32)
            conn = jnp.broadcast_to(flat[:, None, None, :], (n_batch, n_terms, m, n))
            for j in range(k):
                on_site = (g.sites[:, j, None] == site_ax)[None, :, None, :]
                conn = jnp.where(on_site, values[..., j, None], conn)
            sigma_p.append(conn.reshape(n_batch, n_terms * m, n))
            mels.append(mel.reshape(n_batch, n_terms * m))
        sigma_p = jnp.concatenate(sigma_p, axis=1)
        mels = jnp.concatenate(mels, axis=1)
        return (
            sigma_p.reshape(*batch, self.n_conn, n),
            mels.reshape(*batch, self.n_conn),
        )

    # -- matrices ----------------------------------------------------------------------
    def to_sparse(self) -> scipy.sparse.csr_matrix:
        """Sparse matrix in the basis of ``hilbert.all_states()``.

        Built by ``nqs.operator.tables.sparse_matrix`` in jitted chunks of basis
        states.

        Returns:
            (n_states, n_states) CSR matrix, int32 indices, ``self.dtype`` data.
        """
        return sparse_matrix(self)

    def to_dense(self) -> np.ndarray:
        """Dense (n_states, n_states) matrix in the basis of ``all_states()``."""
        return self.to_sparse().toarray()


# -- constructors ----------------------------------------------------------------------
def local_operator(hilbert, sites, matrix) -> LocalOperator:
    """Operator with one term ``matrix`` on ``sites`` (an int or a tuple of ints).

    ``matrix`` is (d^k, d^k) in the local-index basis of ``sites`` (first site most
    significant; local index 0 = smallest local value).
    """
    return LocalOperator(hilbert, ((sites, np.asarray(matrix)),))


def identity(hilbert) -> LocalOperator:
    """The identity operator."""
    return LocalOperator(hilbert, (), 1.0)


def _spin_s(hilbert) -> float:
    s = getattr(hilbert, "s", None)
    if s is None:
        raise ValueError(f"spin operators need a Spin Hilbert space, got {hilbert}")
    return s


def spin_matrices(s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S^z, S^+, S^-) of spin s in the basis m = -s, ..., s (ascending).

    Returns:
        three (2s+1, 2s+1) float64 matrices.
    """
    m = -s + np.arange(round(2 * s) + 1)
    plus = np.diag(np.sqrt(s * (s + 1) - m[:-1] * (m[:-1] + 1)), -1)
    return np.diag(m), plus, plus.T.copy()


def spin_z(hilbert, site: int) -> LocalOperator:
    """S^z on ``site`` (eigenvalues m = -s..s; S = σ/2 for s = 1/2)."""
    return local_operator(hilbert, site, spin_matrices(_spin_s(hilbert))[0])


def spin_plus(hilbert, site: int) -> LocalOperator:
    """S^+ = S^x + i S^y on ``site``."""
    return local_operator(hilbert, site, spin_matrices(_spin_s(hilbert))[1])


def spin_minus(hilbert, site: int) -> LocalOperator:
    """S^- = S^x - i S^y on ``site``."""
    return local_operator(hilbert, site, spin_matrices(_spin_s(hilbert))[2])


def spin_x(hilbert, site: int) -> LocalOperator:
    """S^x = (S^+ + S^-) / 2 on ``site``."""
    _, plus, minus = spin_matrices(_spin_s(hilbert))
    return local_operator(hilbert, site, (plus + minus) / 2)


def spin_y(hilbert, site: int) -> LocalOperator:
    """S^y = (S^+ - S^-) / (2i) on ``site``."""
    _, plus, minus = spin_matrices(_spin_s(hilbert))
    return local_operator(hilbert, site, (plus - minus) / 2j)


def _check_half(hilbert) -> None:
    if _spin_s(hilbert) != 0.5:
        raise ValueError(f"Pauli operators need spin 1/2, got s={hilbert.s}")


def sigma_x(hilbert, site: int) -> LocalOperator:
    """Pauli X on ``site`` (spin-1/2 only)."""
    _check_half(hilbert)
    return 2.0 * spin_x(hilbert, site)


def sigma_y(hilbert, site: int) -> LocalOperator:
    """Pauli Y on ``site`` (spin-1/2 only)."""
    _check_half(hilbert)
    return 2.0 * spin_y(hilbert, site)


def sigma_z(hilbert, site: int) -> LocalOperator:
    """Pauli Z on ``site``: +1 on entry +1 (up), i.e. diag(-1, +1) by local index."""
    _check_half(hilbert)
    return 2.0 * spin_z(hilbert, site)


def _n_max(hilbert) -> int:
    n_max = getattr(hilbert, "n_max", None)
    if n_max is None:
        raise ValueError(f"boson operators need a Fock Hilbert space, got {hilbert}")
    return n_max


def destroy(hilbert, site: int) -> LocalOperator:
    """Boson annihilation b|n> = sqrt(n)|n-1> on ``site`` (truncated at n_max)."""
    n = np.arange(1, _n_max(hilbert) + 1)
    return local_operator(hilbert, site, np.diag(np.sqrt(n), 1))


def create(hilbert, site: int) -> LocalOperator:
    """Boson creation b†|n> = sqrt(n+1)|n+1> on ``site`` (truncated at n_max)."""
    return destroy(hilbert, site).H


def number(hilbert, site: int) -> LocalOperator:
    """Occupation number n = b†b on ``site``."""
    return local_operator(hilbert, site, np.diag(np.arange(_n_max(hilbert) + 1.0)))
