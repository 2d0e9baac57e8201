"""Exact diagonalisation in a sector of an irrep of dimension d > 1.

Irreps of dimension d > 1 (E, E1, T2, ...; ``irrep_reduction``). Orbit bases need a
one-dimensional character, so the sector is reduced to one of a subgroup:

- Z = {g: |χ(g)| = d} is the normal subgroup on which Γ is a scalar, Γ(z) = χ_Z(z) 1
  with χ_Z = χ/d one-dimensional (it holds the translations, and e.g. C2 for the E
  of C4v). For each coset hZ, K = ⟨Z, h⟩ = ∪_j h^j Z and its one-dimensional
  characters λ(h^j z) = μ^j χ_Z(z), μ^n = χ_Z(h^n); the pair (K, λ) with the
  smallest multiplicity m = <Γ|_K, λ> = (1/|K|) Σ_K conj λ χ is kept (m = 1 always
  exists for d = 2: Γ(h) is not a scalar, so its two eigenvalues differ), then the
  largest K, then real λ.
- The character projector P_Γ = (d/M) Σ_g conj χ(g) U(g) commutes with every U(g)
  and with H, and in the orbit basis e_r of the (K, λ) sector it is, with the
  elements grouped in cosets {k∘c} (P_λ U(k) = λ(k) P_λ),

      Q_sr = Σ_c w_c χ_g sqrt(S_s / S_r),   w_c = (d/M) Σ_{k∈K} conj χ(k∘c) λ(k),

  s the representative of τ_c⁻¹(r) and τ_g τ_c⁻¹(r) = s (as in the block matrix).
  Its range holds m states of each multiplet of Γ (tr Q = m L for L levels).
- The lowest levels are those of the block matrix on range(Q), every m-th kept:
  dense (eigh of Q, then of H on its range) for small sectors, otherwise Lanczos
  (``nqs.exact.ground_state``) on P (H - c) P + c, c above the spectrum
  (Gershgorin) so the complement of range(Q) sits at c, and P = 3Q² - 2Q³ (Q is
  idempotent only to the ~1e-10 rounding of irrational characters, P to its
  square).
- When only the coset K itself has a weight, Q = 1 and the (K, λ) sector is the
  irrep's alone, a plain one-dimensional ED with each level once: so for the E
  irreps of C3v and C6v (K holds the rotations, λ(C_n) a non-real eigenvalue of
  Γ(C_n)) and of C4v (K holds C2 and two mirrors, λ(C2) = -1), values no
  one-dimensional irrep takes.

The orbit basis and the block matrix are those of ``nqs.exact_sector`` (its
docstring gives the conventions).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from nqs.exact import ground_state
from nqs.exact_sector import (
    _CHUNK,
    _DENSE_MAX,
    _TOL,
    SectorBasis,
    _bit_tables,
    _image,
    _representatives,
    sector_basis,
    sector_matrix,
)

__all__ = [
    "IrrepReduction",
    "irrep_dim",
    "irrep_ground_state",
    "irrep_projector",
    "irrep_reduction",
]


@dataclasses.dataclass(frozen=True, eq=False)
class IrrepReduction:
    """A sector of a d-dimensional irrep as a one-dimensional sector of a subgroup
    plus the coset data of the projector inside it (see the module docstring).

    Attributes:
        perms: (n_sub, N) int64 elements of the subgroup K.
        characters: (n_sub,) complex128 one-dimensional character λ of K.
        spin_flip: +1, -1 or None, as for the irrep's sector.
        multiplicity: m = <Γ|_K, λ>, the copies of each level in the range of Q.
        cosets: (C, N) int64 representatives c of the cosets {k∘c} with w_c != 0.
        weights: (C,) complex128 w_c = (d / M) Σ_{k ∈ K} conj χ(k∘c) λ(k).
        irrep_dim: dimension d of the irrep.
    """

    perms: np.ndarray
    characters: np.ndarray
    spin_flip: int | None
    multiplicity: int
    cosets: np.ndarray
    weights: np.ndarray
    irrep_dim: int

    @property
    def is_identity(self) -> bool:
        """Whether Q = 1 (only the coset K itself has a weight, and w = 1)."""
        return (
            len(self.cosets) == 1
            and np.array_equal(self.cosets[0], np.arange(self.cosets.shape[1]))
            and abs(self.weights[0] - 1) < 1e-9
        )


def _row_index(perms: np.ndarray):
    """Function mapping (..., N) permutations to their row in ``perms``."""
    n = perms.shape[1]
    keys = np.ascontiguousarray(perms).view(f"V{8 * n}")[:, 0]
    order = np.argsort(keys)
    sorted_keys = keys[order]

    def index(query: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(query, dtype=np.int64)
        q = q.view(f"V{8 * n}")[..., 0]
        pos = np.clip(np.searchsorted(sorted_keys, q), 0, len(keys) - 1)
        if np.any(sorted_keys[pos] != q):
            raise ValueError("perms is not closed under composition (not a group)")
        return order[pos]

    return index


def _faithful(perms, characters):
    """(distinct perms, their characters, d), or None when the irrep is not trivial
    on the elements acting as the identity (then no state is in the sector)."""
    m, n = perms.shape
    if characters.shape != (m,):
        raise ValueError(f"characters must have shape ({m},), got {characters.shape}")
    if np.any(np.sort(perms, axis=1) != np.arange(n)):
        raise ValueError("every row of perms must be a permutation of 0..N-1")
    trivial = np.all(perms == np.arange(n), axis=1)
    if not trivial.any():
        raise ValueError("perms must contain the identity")
    d = int(round(characters[trivial][0].real))
    if d < 1 or abs(characters[trivial][0] - d) > 1e-8:
        raise ValueError("the character of the identity must be a positive integer")
    if np.any(np.abs(characters[trivial] - d) > 1e-8):
        return None
    keys = np.ascontiguousarray(perms).view(f"V{8 * n}")[:, 0]
    _, first = np.unique(keys, return_index=True)
    perms, characters = perms[first], characters[first]
    if abs(np.sum(np.abs(characters) ** 2) / len(perms) - 1) > 1e-8:
        raise ValueError("characters are not those of an irreducible representation")
    return perms, characters, d


def _best_subgroup(perms, characters, d, index):
    """(elements of K, λ, m): K = ⟨Z, h⟩ over the cosets h of Z = {g: |χ(g)| = d},
    λ the one-dimensional character of K occurring least often (m times) in Γ|_K;
    ties go to the larger K, then to real λ."""
    in_z = np.abs(np.abs(characters) - d) < 1e-8
    z_idx = np.flatnonzero(in_z)
    chi_z = characters[z_idx] / d  # Γ(z) = χ_Z(z) 1 on Z
    best = (d, -z_idx.size, int(np.any(np.abs(chi_z.imag) > _TOL)), z_idx, chi_z)
    seen = in_z.copy()
    for h in range(len(perms)):
        if seen[h]:
            continue
        seen[index(perms[z_idx][:, perms[h]])] = True
        cosets, power = [z_idx], perms[h]
        while not in_z[index(power)]:  # h^j Z for j < n, with h^n in Z
            cosets.append(index(perms[z_idx][:, power]))
            power = power[perms[h]]
        members, n = np.concatenate(cosets), len(cosets)
        top = characters[index(power)] / d  # χ_Z(h^n) = μ^n
        for q in range(n):
            mu = np.exp(1j * (np.angle(top) + 2 * np.pi * q) / n)
            lam = (mu ** np.arange(n)[:, None] * chi_z[None, :]).ravel()
            mult = np.vdot(lam, characters[members]).real / members.size
            mult = int(round(mult))
            is_complex = int(np.any(np.abs(lam.imag) > _TOL))
            if mult >= 1 and (mult, -members.size, is_complex) < best[:3]:
                best = (mult, -members.size, is_complex, members, lam)
    return best[3], best[4], best[0]


def irrep_reduction(perms, characters=None, spin_flip=None) -> IrrepReduction | None:
    """Subgroup sector and coset weights for the ED of an irrep of dimension d.

    Args:
        perms: (M, N) int site permutations of a group G (identity included; rows
            may repeat, as on tiny lattices), or a sector object.
        characters: (M,) complex characters χ of an irreducible representation.
        spin_flip: +1, -1 or None.
    Returns:
        the ``IrrepReduction``, or None if Γ is not trivial on the elements that act
        as the identity (the sector holds no state).
    Raises:
        ValueError: not permutations, no identity, not closed, not irreducible.
    """
    if hasattr(perms, "perms") and hasattr(perms, "characters"):
        perms, characters, spin_flip = (
            perms.perms,
            perms.characters,
            getattr(perms, "spin_flip", None),
        )
    elif characters is None:
        raise ValueError("characters are required with a perms array")
    faithful = _faithful(
        np.asarray(perms, dtype=np.int64), np.asarray(characters, dtype=np.complex128)
    )
    if faithful is None:
        return None
    perms, characters, d = faithful
    index = _row_index(perms)
    members, lam, mult = _best_subgroup(perms, characters, d, index)
    sub = perms[members]
    assigned = np.zeros(len(perms), bool)
    cosets, weights = [], []
    for c in range(len(perms)):
        if assigned[c]:
            continue
        coset = index(sub[:, perms[c]])  # k∘c as gathers: sigma[c][k] = sigma[k[c]]
        assigned[coset] = True
        w = d * np.vdot(characters[coset], lam) / len(perms)
        if abs(w) > _TOL:
            cosets.append(perms[c])
            weights.append(w)
    return IrrepReduction(
        perms=sub,
        characters=lam,
        spin_flip=spin_flip,
        multiplicity=mult,
        cosets=np.array(cosets, dtype=np.int64),
        weights=np.array(weights, dtype=np.complex128),
        irrep_dim=d,
    )


def irrep_projector(basis: SectorBasis, reduction: IrrepReduction):
    """Matrix of the irrep's character projector on the subgroup sector.

    Q_sr = Σ_c w_c χ_g sqrt(S_s / S_r), s the representative of τ_c⁻¹(r) and
    τ_g τ_c⁻¹(r) = s (``basis`` from ``sector_basis`` of the reduction's subgroup).

    Returns:
        (D, D) CSR Hermitian projector, float64 if all its entries are real, else
        complex128; its trace is m × the number of levels.
    """
    reps, d = basis.reps, basis.dimension
    mask = reps.dtype.type((1 << basis.n_sites) - 1)
    inverse = np.argsort(reduction.cosets, axis=1)  # τ_c⁻¹ as a gather
    tables = _bit_tables(inverse, reps.dtype)
    rows, cols, data = [], [], []
    for table, w in zip(tables, reduction.weights, strict=True):
        for start in range(0, d, _CHUNK):
            col = np.arange(start, min(start + _CHUNK, d))
            rep, g = _representatives(
                _image(reps[col], table), basis.tables, basis.use_flip, mask
            )
            row = np.clip(np.searchsorted(reps, rep), 0, d - 1)
            found = reps[row] == rep
            row, col, g = row[found], col[found], g[found]
            ratio = np.sqrt(basis.norms[row] / basis.norms[col])
            rows.append(row)
            cols.append(col)
            data.append(w * basis.characters[g] * ratio)
    data = np.concatenate(data)
    if np.all(np.abs(data.imag) < _TOL):
        data = data.real
    proj = scipy.sparse.coo_matrix(
        (data, (np.concatenate(rows), np.concatenate(cols))), shape=(d, d)
    ).tocsr()
    return ((proj + proj.conj().T) / 2).tocsr()


def _lowest_in_range(matrix, proj, n_eig: int, rank: int) -> np.ndarray:
    """Lowest ``n_eig`` eigenvalues of ``matrix`` on the range of the commuting
    projector ``proj`` (of rank ``rank``): dense on small spaces, else Lanczos on
    P (H - c) P + c with c above the spectrum (Gershgorin), which lifts the
    complement to c. Characters rounded to ~1e-10 leave Q idempotent to ~1e-11 only,
    an error the shift would amplify: P is Q purified once (McWeeny)."""
    dim = matrix.shape[0]
    if dim <= _DENSE_MAX or n_eig >= dim - 1:
        w, v = np.linalg.eigh(proj.toarray())
        q = v[:, w > 0.5]
        if q.shape[1] != rank:
            raise RuntimeError(f"projector rank {q.shape[1]} != trace {rank}")
        block = q.conj().T @ (matrix @ q)
        return np.linalg.eigvalsh((block + block.conj().T) / 2)[:n_eig]
    diag = matrix.diagonal()
    radius = np.asarray(abs(matrix).sum(axis=1)).ravel() - np.abs(diag)
    shift = float(np.max(diag.real + radius)) + 1.0

    def purified(v):  # 3Q^2 - 2Q^3: idempotent to O(ε^2) if Q is off by ε
        q2 = proj @ (proj @ v)
        return 3 * q2 - 2 * (proj @ q2)

    def apply(v):
        pv = purified(v)
        return purified(matrix @ pv - shift * pv) + shift * v

    dtype = np.result_type(matrix.dtype, proj.dtype)
    op = scipy.sparse.linalg.LinearOperator((dim, dim), matvec=apply, dtype=dtype)
    energies, _ = ground_state(op, k=n_eig)
    return np.asarray(energies)


def irrep_ground_state(
    ham, hilbert, perms, characters=None, spin_flip=None, k: int = 1, conn=None
) -> tuple[np.ndarray, int]:
    """Lowest ``k`` levels of ``ham`` in the sector of an irrep of dimension d >= 1.

    Args:
        ham: ``LocalOperator`` commuting with the group (not checked).
        hilbert: its spin-1/2 space.
        perms, characters, spin_flip: the sector (see ``irrep_reduction``).
        k: number of levels (each multiplet once).
        conn: ``connections_fn(ham)`` to reuse across sectors (optional).
    Returns:
        energies: (min(k, L),) float64 ascending, one per multiplet; the number of
        levels L (multiplets, = tr P / d).
    """
    reduction = irrep_reduction(perms, characters, spin_flip)
    if reduction is None:
        return np.zeros(0), 0
    basis = sector_basis(
        hilbert, reduction.perms, reduction.characters, reduction.spin_flip
    )
    m = reduction.multiplicity
    if reduction.is_identity:  # the subgroup sector lies in the irrep's range
        levels, proj = basis.dimension // m, None
    else:
        proj = irrep_projector(basis, reduction) if basis.dimension else None
        trace = 0.0 if proj is None else proj.diagonal().real.sum()
        levels = int(round(trace / m))
        if abs(trace - m * levels) > 1e-6:
            raise RuntimeError(f"projector trace {trace} is not a multiple of {m}")
    if levels == 0:
        return np.zeros(0), 0
    matrix = sector_matrix(ham, basis, conn)
    n_eig = min(k, levels) * m
    if proj is None:
        energies, _ = ground_state(matrix, k=n_eig)
    else:
        energies = _lowest_in_range(matrix, proj, n_eig, m * levels)
    return np.sort(np.asarray(energies))[::m], levels


def irrep_dim(perms, characters) -> int:
    """d of a sector object, or χ(identity) of (perms, characters) arrays."""
    if hasattr(perms, "perms") and hasattr(perms, "characters"):
        return int(getattr(perms, "dim", 1))
    perms = np.asarray(perms)
    trivial = np.all(perms == np.arange(perms.shape[-1]), axis=-1)
    if characters is None or perms.ndim != 2 or not trivial.any():
        return 1  # sector_basis reports the error
    return int(round(np.asarray(characters)[trivial][0].real))
