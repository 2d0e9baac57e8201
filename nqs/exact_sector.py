"""Exact diagonalisation of spin-1/2 Hamiltonians in one symmetry sector.

A sector is given by plain arrays (or a ``nqs.symmetry.Sector``, which carries them):
``perms`` (M, N) site permutations forming a group (identity included) and their
``characters`` (M,) of an irreducible representation Γ (one-dimensional, or of
dimension d = χ(identity) > 1, see the last section), optionally times the global
spin flip with parity ±1 (spin-1/2, total_sz = 0).

Conventions (those of ``nqs.symmetry``):

- element m maps a configuration to ``τ_m(σ) = σ[perms[m]]``, i.e. (τ_m σ)_i =
  σ_{perms[m, i]}; with the flip, τ_(m, f)(σ) = (-1)^f σ[perms[m]], character
  χ_m s^f;
- sector projector (Pψ)(σ) = (1/|G|) Σ_g conj(χ_g) ψ(τ_g σ).

Basis (Sandvik, "Computational studies of quantum spin systems", AIP Conf. Proc.
1297, 135 (2010), sec. 4): a configuration is the bit string b = Σ_i [σ_i = +1] 2^i;
the representative of an orbit is its smallest bit string; its normalisation is the
stabiliser character sum S_r = Σ_{g: τ_g r = r} χ_g (= |Stab r| or 0); orbits with
S_r = 0 have no state in the sector. With e_r = P δ_r / ||P δ_r||, the block matrix is

    <e_s|H|e_r> = Σ_σ' χ_g(σ') <σ'|H|r> sqrt(S_s / S_r),   τ_g(σ') = s,

summed over the connected configurations σ' of r (``LocalOperator.get_conn``), s the
representative of σ'. Bits are permuted by lookup tables (per byte, per element), the
representatives are found in sorted arrays by ``searchsorted``; everything runs over
chunks of states, with no Python loop over states.

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

Elements acting as the same permutation (tiny lattices) are merged: χ then depends on
the permutation alone, or, if Γ is not trivial on the elements acting as the
identity, no state is in the sector.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from nqs.exact import _DENSE_LIMIT, ground_state

__all__ = [
    "IrrepReduction",
    "SectorBasis",
    "connections_fn",
    "irrep_ground_state",
    "irrep_projector",
    "irrep_reduction",
    "sector_basis",
    "sector_dimension",
    "sector_ground_state",
    "sector_matrix",
    "sector_spectra",
]

_CHUNK = 1 << 16  # configurations per chunk
_TOL = 1e-9
# projected problems up to this size are dense; above it ground_state gets a
# LinearOperator, which it must not densify
_DENSE_MAX = _DENSE_LIMIT


@dataclasses.dataclass(frozen=True, eq=False)
class SectorBasis:
    """Orbit representatives of one sector and the tables to find them.

    Attributes:
        n_sites: number of sites N.
        reps: (D,) uint32 (N <= 32) or uint64 sorted representative bit strings.
        norms: (D,) float64 stabiliser character sums S_r (= |Stab r|).
        characters: (G,) complex128 characters of the elements, spin-flipped
            copies (if any) after the M plain ones.
        tables: (M, n_bytes, 256) bit-permutation tables of the plain elements.
        use_flip: whether the group contains the global spin flip.
    """

    n_sites: int
    reps: np.ndarray
    norms: np.ndarray
    characters: np.ndarray
    tables: np.ndarray
    use_flip: bool

    @property
    def dimension(self) -> int:
        """Number of sector basis states D."""
        return int(self.reps.size)

    @property
    def is_real(self) -> bool:
        """Whether every character is real."""
        return bool(np.all(np.abs(self.characters.imag) < _TOL))


# -- group data ------------------------------------------------------------------------
def _unpack(perms, characters, spin_flip):
    """Accept a sector object (``perms``, ``characters``, ``spin_flip``, ``dim``)."""
    if hasattr(perms, "perms") and hasattr(perms, "characters"):
        sector = perms
        if getattr(sector, "dim", 1) != 1:
            raise NotImplementedError(
                f"orbit bases exist for one-dimensional irreps only, got dimension "
                f"{sector.dim} ({getattr(sector, 'irrep', '?')}); "
                "sector_ground_state handles it through irrep_reduction"
            )
        return sector.perms, sector.characters, getattr(sector, "spin_flip", None)
    if characters is None:
        raise ValueError("characters are required with a perms array")
    return perms, characters, spin_flip


def _check_group(perms: np.ndarray, characters: np.ndarray) -> None:
    """Raise ValueError unless perms is a group and characters a 1-D representation."""
    m, n = perms.shape
    if characters.shape != (m,):
        raise ValueError(f"characters must have shape ({m},), got {characters.shape}")
    if np.any(np.sort(perms, axis=1) != np.arange(n)):
        raise ValueError("every row of perms must be a permutation of 0..N-1")
    if not np.any(np.all(perms == np.arange(n), axis=1)):
        raise ValueError("perms must contain the identity")
    if np.any(np.abs(np.abs(characters) - 1) > 1e-8):
        raise NotImplementedError(
            "sector ED supports one-dimensional representations only (|χ| = 1)"
        )
    keys = np.ascontiguousarray(perms).view(f"V{perms.itemsize * n}").ravel()
    order = np.argsort(keys)
    # comp[a, b] = perms[a][perms[b]], an element τ_a τ_b or τ_b τ_a (either is
    # fine for a one-dimensional character, a class function)
    comp = np.ascontiguousarray(perms[:, perms])
    comp_keys = np.ascontiguousarray(comp).view(f"V{perms.itemsize * n}")[..., 0]
    pos = np.clip(np.searchsorted(keys[order], comp_keys), 0, m - 1)
    if np.any(keys[order][pos] != comp_keys):
        raise ValueError("perms is not closed under composition (not a group)")
    prod = order[pos]
    if np.any(
        np.abs(characters[:, None] * characters[None, :] - characters[prod]) > 1e-8
    ):
        raise ValueError("characters are not a one-dimensional representation")


def _bit_tables(perms: np.ndarray, dtype) -> np.ndarray:
    """tables[m, j, v]: image bits of byte value v at byte j under τ_m.

    New bit i of τ_m(b) is old bit perms[m, i]; old bit p moves to inv[m, p].
    """
    m, n = perms.shape
    n_bytes = (n + 7) // 8
    inv = np.argsort(perms, axis=1)
    inv = np.concatenate([inv, np.full((m, 8 * n_bytes - n), -1)], axis=1)
    values = np.arange(256)
    bits = (values[:, None] >> np.arange(8)) & 1  # (256, 8)
    tables = np.zeros((m, n_bytes, 256), dtype=dtype)
    for j in range(n_bytes):
        dest = inv[:, 8 * j : 8 * j + 8]  # (M, 8)
        weight = np.where(
            dest >= 0, np.left_shift(1, np.maximum(dest, 0), dtype=object), 0
        )
        weight = weight.astype(dtype)  # (M, 8)
        tables[:, j, :] = (bits[None, :, :].astype(dtype) * weight[:, None, :]).sum(
            axis=2, dtype=dtype
        )
    return tables


def _image(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """τ(b) for one element's (n_bytes, 256) table; codes (B,) -> (B,)."""
    out = table[0][codes & 255]
    for j in range(1, table.shape[0]):
        out |= table[j][(codes >> (8 * j)) & 255]
    return out


def _all_images(codes, tables, use_flip, mask):
    """(G, B) images of codes under every element (flipped copies last)."""
    out = tables[:, 0, codes & 255]
    for j in range(1, tables.shape[1]):
        out |= tables[:, j, (codes >> (8 * j)) & 255]
    if use_flip:
        out = np.concatenate([out, out ^ mask])
    return out


def _representatives(codes, basis_tables, use_flip, mask):
    """(rep, element) of each code: smallest image and an element reaching it."""
    images = _all_images(codes, basis_tables, use_flip, mask)
    g = np.argmin(images, axis=0)
    return images[g, np.arange(codes.size)], g


# -- basis -----------------------------------------------------------------------------
def _candidates(n_sites: int, n_up: int | None, top_zero: bool, dtype):
    """Chunks of bit strings (with n_up set bits if given); top bit 0 if top_zero."""
    n_low = n_sites // 2
    n_high = n_sites - n_low - (1 if top_zero else 0)
    lows = np.arange(1 << n_low, dtype=dtype)
    highs = np.arange(1 << n_high, dtype=dtype)
    if n_up is None:
        rows = max(1, _CHUNK * 16 // lows.size)
        for start in range(0, highs.size, rows):
            h = highs[start : start + rows]
            yield ((h[:, None] << dtype(n_low)) | lows[None, :]).ravel()
        return
    pop_low = np.bitwise_count(lows)
    pop_high = np.bitwise_count(highs)
    for p in range(min(n_up, n_high) + 1):
        low = lows[pop_low == n_up - p]
        high = highs[pop_high == p]
        if low.size == 0 or high.size == 0:
            continue
        rows = max(1, _CHUNK * 16 // low.size)
        for start in range(0, high.size, rows):
            h = high[start : start + rows]
            yield ((h[:, None] << dtype(n_low)) | low[None, :]).ravel()


def _n_up(hilbert) -> int | None:
    if hilbert.local_size != 2:
        raise ValueError("sector ED needs spin-1/2 (two local states)")
    if hilbert.constraint_sum is None:
        return None
    return (hilbert.constraint_sum + hilbert.n_sites) // 2


def sector_basis(hilbert, perms, characters=None, spin_flip=None) -> SectorBasis:
    """Orbit representatives and normalisations of a sector.

    Args:
        hilbert: ``nqs.hilbert.Spin`` with s = 1/2 (total_sz optional).
        perms: (M, N) int site permutations (a group; τ_m(σ) = σ[perms[m]]), or a
            sector object with ``perms``, ``characters``, ``spin_flip``.
        characters: (M,) complex characters of a one-dimensional representation.
        spin_flip: +1 or -1 to include the global spin flip with that parity
            (total_sz = 0 only), None for none.
    Returns:
        the ``SectorBasis``.
    Raises:
        ValueError: bad group, characters, or spin flip without total_sz = 0.
        NotImplementedError: multi-dimensional irreps.
    """
    perms, characters, spin_flip = _unpack(perms, characters, spin_flip)
    perms = np.asarray(perms, dtype=np.int64)
    characters = np.asarray(characters, dtype=np.complex128)
    n = hilbert.n_sites
    if perms.ndim != 2 or perms.shape[1] != n:
        raise ValueError(f"perms must have shape (M, {n}), got {perms.shape}")
    n_up = _n_up(hilbert)
    _check_group(perms, characters)
    use_flip = spin_flip is not None
    if use_flip:
        if spin_flip not in (1, -1):
            raise ValueError(f"spin_flip must be +1, -1 or None, got {spin_flip}")
        if n_up is None or 2 * n_up != n:
            raise ValueError("spin_flip needs total_sz = 0")
        characters = np.concatenate([characters, spin_flip * characters])
    dtype = np.uint32 if n <= 32 else np.uint64
    mask = dtype((1 << n) - 1)
    tables = _bit_tables(perms, dtype)
    order = np.argsort(np.abs(np.arange(len(perms)) - 1))[::-1]  # a fixed order
    reps, norms = [], []
    for codes in _candidates(n, n_up, use_flip, dtype):
        for m in order:  # keep codes no larger than any image (cheap rejection)
            codes = codes[codes <= _image(codes, tables[m])]
            if use_flip:
                codes = codes[codes <= (_image(codes, tables[m]) ^ mask)]
            if codes.size == 0:
                break
        if codes.size == 0:
            continue
        images = _all_images(codes, tables, use_flip, mask)
        stab = (images == codes[None, :]) * characters[:, None]
        norm = stab.sum(axis=0).real
        keep = norm > 0.5
        reps.append(codes[keep])
        norms.append(norm[keep])
    reps = np.concatenate(reps) if reps else np.zeros(0, dtype)
    norms = np.concatenate(norms) if norms else np.zeros(0)
    order = np.argsort(reps)
    return SectorBasis(n, reps[order], norms[order], characters, tables, use_flip)


def sector_dimension(hilbert, perms, characters=None, spin_flip=None) -> int:
    """Dimension of a sector (see ``sector_basis`` for the arguments)."""
    return sector_basis(hilbert, perms, characters, spin_flip).dimension


# -- block matrix ----------------------------------------------------------------------
def connections_fn(op):
    """Jitted ``op.get_conn``, to share one compilation across sectors."""
    return jax.jit(op.get_conn)


def _to_sigma(codes: np.ndarray, n: int) -> np.ndarray:
    bits = (codes[:, None] >> np.arange(n, dtype=codes.dtype)) & 1
    return (2 * bits.astype(np.int8) - 1).astype(np.int8)


def _to_codes(sigma: np.ndarray, dtype) -> np.ndarray:
    packed = np.packbits(sigma > 0, axis=-1, bitorder="little")
    width = np.dtype(dtype).itemsize
    pad = width - packed.shape[-1]
    packed = np.concatenate(
        [packed, np.zeros(packed.shape[:-1] + (pad,), np.uint8)], axis=-1
    )
    return np.ascontiguousarray(packed).view(dtype)[..., 0]


def _column_chunk(basis, conn, start, chunk, dtype_out):
    reps = basis.reps
    cols = np.arange(start, min(start + chunk, reps.size))
    codes = reps[cols]
    sigma = np.zeros((chunk, basis.n_sites), np.int8)
    sigma[: codes.size] = _to_sigma(codes, basis.n_sites)
    sigma_p, mels = conn(jnp.asarray(sigma))
    sigma_p, mels = np.asarray(sigma_p)[: codes.size], np.asarray(mels)[: codes.size]
    keep = mels != 0
    col = np.broadcast_to(cols[:, None], keep.shape)[keep]
    mel = mels[keep]
    conn_codes = _to_codes(sigma_p[keep], reps.dtype)
    mask = reps.dtype.type((1 << basis.n_sites) - 1)
    rep, g = _representatives(conn_codes, basis.tables, basis.use_flip, mask)
    row = np.clip(np.searchsorted(reps, rep), 0, reps.size - 1)
    found = reps[row] == rep
    row, col, g, mel = row[found], col[found], g[found], mel[found]
    data = basis.characters[g] * np.conj(mel)
    data = data * np.sqrt(basis.norms[row] / basis.norms[col])
    if dtype_out == np.float64:
        data = data.real
    return row.astype(np.int32), col.astype(np.int32), data.astype(dtype_out)


def sector_matrix(op, basis: SectorBasis, conn=None) -> scipy.sparse.csr_matrix:
    """Block matrix <e_s|op|e_r> of an operator commuting with the sector's group.

    Args:
        op: ``LocalOperator`` on the basis' spin-1/2 space.
        basis: ``SectorBasis`` from ``sector_basis``.
        conn: ``connections_fn(op)`` to reuse across sectors (default: a new one).
    Returns:
        (D, D) CSR matrix, float64 if op and characters are real, else complex128.
    """
    is_real = basis.is_real and np.dtype(op.dtype).kind == "f"
    dtype_out = np.float64 if is_real else np.complex128
    # powers of two, so that sectors of similar size share one compilation
    chunk = min(_CHUNK // 4, max(1024, 1 << (basis.dimension - 1).bit_length()))
    conn = connections_fn(op) if conn is None else conn
    rows, cols, data = [], [], []
    for start in range(0, basis.dimension, chunk):
        r, c, d = _column_chunk(basis, conn, start, chunk, dtype_out)
        rows.append(r)
        cols.append(c)
        data.append(d)
    d = basis.dimension
    if not rows:
        return scipy.sparse.csr_matrix((d, d), dtype=dtype_out)
    coo = scipy.sparse.coo_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
        shape=(d, d),
    )
    return coo.tocsr()


# -- irreps of dimension d > 1 ---------------------------------------------------------
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


def _irrep_dim(perms, characters) -> int:
    """d of a sector object, or χ(identity) of (perms, characters) arrays."""
    if hasattr(perms, "perms") and hasattr(perms, "characters"):
        return int(getattr(perms, "dim", 1))
    perms = np.asarray(perms)
    trivial = np.all(perms == np.arange(perms.shape[-1]), axis=-1)
    if characters is None or perms.ndim != 2 or not trivial.any():
        return 1  # sector_basis reports the error
    return int(round(np.asarray(characters)[trivial][0].real))


def sector_ground_state(
    ham, hilbert, perms, characters=None, spin_flip=None, k: int = 1, conn=None
) -> tuple[np.ndarray, int]:
    """Lowest ``k`` energies of ``ham`` in one sector, for irreps of any dimension.

    Args:
        ham: ``LocalOperator`` commuting with the sector's group (not checked).
        hilbert: its spin-1/2 space.
        perms, characters, spin_flip: the sector (see ``sector_basis``); characters
            of an irrep of dimension d > 1 (χ(identity) = d) go through
            ``irrep_ground_state``.
        k: number of energies (fewer if the sector is smaller).
        conn: ``connections_fn(ham)`` to reuse across sectors (optional).
    Returns:
        energies: (min(k, D),) float64 ascending; dimension D (int): the number of
        basis states, for d > 1 the number of levels (each d-fold multiplet once).
    """
    if _irrep_dim(perms, characters) > 1:
        return irrep_ground_state(ham, hilbert, perms, characters, spin_flip, k, conn)
    basis = sector_basis(hilbert, perms, characters, spin_flip)
    if basis.dimension == 0:
        return np.zeros(0), 0
    matrix = sector_matrix(ham, basis, conn)
    energies, _ = ground_state(matrix, k=min(k, basis.dimension))
    return np.asarray(energies), basis.dimension


def sector_spectra(ham, hilbert, sectors, k: int = 1) -> list[tuple[np.ndarray, int]]:
    """``sector_ground_state`` of each sector, sharing one compiled ``get_conn``.

    Args:
        ham: ``LocalOperator``.
        hilbert: its spin-1/2 space.
        sectors: sector objects (``perms``, ``characters``, ``spin_flip``) or
            (perms, characters, spin_flip) tuples.
        k: energies per sector.
    Returns:
        one (energies, dimension) per sector, in order.
    """
    conn = connections_fn(ham)
    out = []
    for sec in sectors:
        args = (sec,) if hasattr(sec, "perms") else tuple(sec)
        out.append(sector_ground_state(ham, hilbert, *args, k=k, conn=conn))
    return out
