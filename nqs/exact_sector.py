"""Exact diagonalisation of spin-1/2 Hamiltonians in one symmetry sector.

A sector is given by plain arrays (or a ``nqs.symmetry.Sector``, which carries them):
``perms`` (M, N) site permutations forming a group (identity included) and their
``characters`` (M,) of an irreducible representation Γ (one-dimensional, or of
dimension d = χ(identity) > 1, see ``nqs.exact_irrep``), optionally times the global
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

Irreps of dimension d > 1 (E, E1, T2, ...) are reduced to a one-dimensional sector of a
subgroup and a projector inside it: ``nqs.exact_irrep``.

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
    "SectorBasis",
    "connections_fn",
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


def sector_ground_state(
    ham, hilbert, perms, characters=None, spin_flip=None, k: int = 1, conn=None
) -> tuple[np.ndarray, int]:
    """Lowest ``k`` energies of ``ham`` in one sector, for irreps of any dimension.

    Args:
        ham: ``LocalOperator`` commuting with the sector's group (not checked).
        hilbert: its spin-1/2 space.
        perms, characters, spin_flip: the sector (see ``sector_basis``); characters
            of an irrep of dimension d > 1 (χ(identity) = d) go through
            ``nqs.exact_irrep.irrep_ground_state``.
        k: number of energies (fewer if the sector is smaller).
        conn: ``connections_fn(ham)`` to reuse across sectors (optional).
    Returns:
        energies: (min(k, D),) float64 ascending; dimension D (int): the number of
        basis states, for d > 1 the number of levels (each d-fold multiplet once).
    """
    from nqs import exact_irrep  # it builds on this module

    if exact_irrep.irrep_dim(perms, characters) > 1:
        return exact_irrep.irrep_ground_state(
            ham, hilbert, perms, characters, spin_flip, k, conn
        )
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
