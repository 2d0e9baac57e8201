"""Sector exact diagonalisation against dense matrices built independently.

Groups are built here from simple formulas (ring translations and inversion, torus
translations, C4v about a site); references are the dense matrix of the operator
restricted to the range of the dense projector P = (1/|G|) Σ_g conj(χ_g) T_g, and the
full dense spectrum.
"""

import functools

import numpy as np
import pytest

from nqs import hamiltonian, hilbert, lattice, symmetry
from nqs.exact import ground_state
from nqs.exact_sector import (
    connections_fn,
    sector_basis,
    sector_dimension,
    sector_ground_state,
    sector_matrix,
    sector_spectra,
)
from nqs.operator import LocalOperator


# -- groups from formulas --------------------------------------------------------------
def ring(n):
    sites = np.arange(n)
    return np.array([(sites + t) % n for t in range(n)])


def ring_dihedral(n):
    trans = ring(n)
    return np.concatenate([trans, trans[:, ::-1]])


def torus(lx, ly):
    x, y = np.divmod(np.arange(lx * ly), ly)
    return np.array(
        [((x + a) % lx) * ly + (y + b) % ly for a in range(lx) for b in range(ly)]
    ), np.array([(a, b) for a in range(lx) for b in range(ly)])


def square_space_group(n):
    """Translations x C4v about site 0 of an n x n torus; (r, s) of each element."""
    x, y = np.divmod(np.arange(n * n), n)
    perms, rs = [], []
    for s in range(2):
        for r in range(4):
            px, py = x, (-y if s else y)
            for _ in range(r):
                px, py = -py, px
            for a in range(n):
                for b in range(n):
                    perms.append(((px + a) % n) * n + (py + b) % n)
                    rs.append((r, s))
    return np.array(perms), np.array(rs)


def momentum_chars(shifts, ns, extents):
    phase = sum(2 * np.pi * n * shifts[:, i] / extents[i] for i, n in enumerate(ns))
    return np.exp(-1j * phase)


# -- dense references ------------------------------------------------------------------
def dense_sector_spectrum(op, space, perms, chars, spin_flip=None):
    """Spectrum of H on the range of P (Pψ)(σ) = (1/|G|) Σ conj(χ_g) ψ(τ_g σ)."""
    states = space.all_states()
    index = {s.tobytes(): i for i, s in enumerate(states.astype(np.int8))}
    elements = [(p, c, 1) for p, c in zip(perms, chars, strict=True)]
    if spin_flip is not None:
        elements += [(p, spin_flip * c, -1) for p, c in zip(perms, chars, strict=True)]
    is_real = np.all(np.imag(chars) == 0) and np.isrealobj(op.to_dense())
    proj = np.zeros((len(states), len(states)), float if is_real else complex)
    for p, c, f in elements:
        images = (f * states[:, p]).astype(np.int8)
        cols = [index[s.tobytes()] for s in images]
        value = np.conj(c) / len(elements)
        proj[np.arange(len(states)), cols] += value.real if is_real else value
    w, v = np.linalg.eigh((proj + proj.conj().T) / 2)
    q = v[:, w > 0.5]
    h = q.conj().T @ op.to_dense() @ q
    return np.linalg.eigvalsh(h)


@functools.cache
def j1j2_model(kind, extent, total_sz, j2):
    """(space, op) shared by the tests of one system (one compiled get_conn each)."""
    lat = getattr(lattice, kind)(extent)
    space = hilbert.Spin(lat.n_sites, total_sz=total_sz)
    return space, hamiltonian.j1j2(space, lat, 1.0, j2)


_CONN = {}


def spectrum(op, space, perms, chars, spin_flip=None):
    """Dense spectrum of the sector matrix (one compiled get_conn per operator)."""
    conn = _CONN.setdefault(id(op), (op, connections_fn(op)))[1]
    basis = sector_basis(space, perms, chars, spin_flip)
    matrix = sector_matrix(op, basis, conn).toarray()
    np.testing.assert_allclose(matrix, matrix.conj().T, atol=1e-12)
    return np.linalg.eigvalsh(matrix) if basis.dimension else np.zeros(0)


def chiral_chain(n):
    """Heisenberg + scalar chirality S_i·(S_{i+1} x S_{i+2}): translation invariant,
    odd under inversion and under time reversal, so no symmetry maps k to -k, the
    spectra at k and -k differ and the sign convention of k is tested."""
    space = hilbert.Spin(n, total_sz=0)
    s = [
        np.array([[0, 1], [1, 0]]) / 2,
        np.array([[0, -1j], [1j, 0]]) / 2,
        np.array([[1, 0], [0, -1]]) / 2,
    ]
    chi = sum(
        np.sign(np.linalg.det(np.eye(3)[[a, b, c]]))
        * np.kron(np.kron(s[a], s[b]), s[c])
        for a in range(3)
        for b in range(3)
        for c in range(3)
        if len({a, b, c}) == 3
    )
    terms = tuple(((i, (i + 1) % n, (i + 2) % n), 0.8 * chi) for i in range(n))
    ham = hamiltonian.heisenberg(space, lattice.chain(n), 1.0)
    return space, ham + LocalOperator(space, terms)


# -- each sector against the dense projection ------------------------------------------
def test_chiral_chain_momenta_match_projection():
    space, op = chiral_chain(8)
    perms = ring(8)
    shifts = np.arange(8)[:, None]
    for n in (1, 3):
        chars = momentum_chars(shifts, (n,), (8,))
        ours = spectrum(op, space, perms, chars)
        ref = dense_sector_spectrum(op, space, perms, chars)
        np.testing.assert_allclose(ours, ref, atol=1e-10)
    k1 = spectrum(op, space, perms, momentum_chars(shifts, (1,), (8,)))
    k7 = spectrum(op, space, perms, momentum_chars(shifts, (7,), (8,)))
    assert np.max(np.abs(k1 - k7)) > 1e-3  # k and -k differ: the test can see a sign


@pytest.mark.parametrize("n_mom", [0, 4], ids=["k0", "kpi"])
@pytest.mark.parametrize("parity", [1, -1], ids=["P+", "P-"])
@pytest.mark.parametrize("flip", [1, -1, None], ids=["Z+", "Z-", "noZ"])
def test_chain_dihedral_matches_projection(n_mom, parity, flip):
    n = 8
    space, op = j1j2_model("chain", n, 0, 0.3)
    perms = ring_dihedral(n)
    shifts = np.concatenate([np.arange(n), np.arange(n)])[:, None]
    chars = momentum_chars(shifts, (n_mom,), (n,)).real.round()
    chars[n:] *= parity
    ours = spectrum(op, space, perms, chars, flip)
    ref = dense_sector_spectrum(op, space, perms, chars, flip)
    np.testing.assert_allclose(ours, ref, atol=1e-10)


@pytest.mark.parametrize("irrep", ["A1", "A2", "B1", "B2"])
def test_square_c4v_matches_projection(irrep):
    space, op = j1j2_model("square", 3, 0.5, 0.4)
    perms, rs = square_space_group(3)
    r, s = rs.T
    chars = {"A1": 0 * r + 1, "A2": (-1) ** s, "B1": (-1) ** r, "B2": (-1) ** (r + s)}
    chars = chars[irrep].astype(complex)
    ours = spectrum(op, space, perms, chars)
    ref = dense_sector_spectrum(op, space, perms, chars)
    assert ours.size == ref.size > 0
    np.testing.assert_allclose(ours, ref, atol=1e-10)


# -- union of all sectors = full spectrum ----------------------------------------------
def union(op, space, sectors):
    energies, dims = [], 0
    for perms, chars, flip in sectors:
        energies.append(spectrum(op, space, perms, chars, flip))
        dims += sector_dimension(space, perms, chars, flip)
    return np.sort(np.concatenate(energies)), dims


def translation_sectors(perms, shifts, extents, flips=(None,)):
    grid = np.stack(np.meshgrid(*[np.arange(e) for e in extents], indexing="ij"), -1)
    for ns in grid.reshape(-1, len(extents)):
        for flip in flips:
            yield perms, momentum_chars(shifts, ns, extents), flip


@pytest.mark.parametrize(
    "case",
    [
        ("chain", 10, 0, (None,)),
        ("chain", 10, 0, (1, -1)),
        ("chain", 8, None, (None,)),
        ("square", (4, 2), 0, (1, -1)),
        ("square", (3, 3), None, (None,)),
        ("triangular", (3, 3), 0.5, (None,)),
        ("triangular", (3, 2), None, (None,)),
    ],
    ids=lambda c: f"{c[0]}-{c[1]}-sz{c[2]}-flip{c[3][0]}",
)
def test_union_of_translation_sectors_is_full_spectrum(case):
    kind, extent, total_sz, flips = case
    if kind == "chain":
        perms, shifts, extents = ring(extent), np.arange(extent)[:, None], (extent,)
    else:
        (perms, shifts), extents = torus(*extent), extent
    space, op = j1j2_model(kind, extent, total_sz, 0.3)
    energies, dims = union(
        op, space, translation_sectors(perms, shifts, extents, flips)
    )
    assert dims == space.n_states
    np.testing.assert_allclose(energies, np.linalg.eigvalsh(op.to_dense()), atol=1e-10)


def test_union_of_dihedral_and_flip_sectors_is_full_spectrum():
    """Chain L=8: (k=0, π) x inversion ± x flip ±, other k x flip ±."""
    n = 8
    space = hilbert.Spin(n, total_sz=0)
    op = hamiltonian.heisenberg(space, lattice.chain(n), 1.0)
    dihedral, shifts2 = ring_dihedral(n), np.tile(np.arange(n), 2)[:, None]
    sectors = []
    for m in range(n):
        for flip in (1, -1):
            if m in (0, n // 2):
                for parity in (1, -1):
                    chars = momentum_chars(shifts2, (m,), (n,)).real.round()
                    chars[n:] *= parity
                    sectors.append((dihedral, chars, flip))
            else:
                chars = momentum_chars(np.arange(n)[:, None], (m,), (n,))
                sectors.append((ring(n), chars, flip))
    energies, dims = union(op, space, sectors)
    assert dims == space.n_states
    np.testing.assert_allclose(energies, np.linalg.eigvalsh(op.to_dense()), atol=1e-10)


def test_symmetry_module_sectors_union_is_full_spectrum():
    """Sectors from nqs.symmetry (one-dimensional irreps on the chain) are accepted."""
    lat = lattice.chain(8)
    space, op = j1j2_model("chain", 8, 0, 0.3)
    energies, dims = [], 0
    for sec in symmetry.all_sectors(lat, "space", spin_flip=True):
        basis = sector_basis(space, sec)
        dims += basis.dimension
        energies.append(spectrum(op, space, sec.perms, sec.characters, sec.spin_flip))
    assert dims == space.n_states
    np.testing.assert_allclose(
        np.sort(np.concatenate(energies)),
        np.linalg.eigvalsh(op.to_dense()),
        atol=1e-10,
    )


# -- physics facts ---------------------------------------------------------------------
def test_heisenberg_chain_4n_plus_2_ground_state_at_k_pi():
    n = 10
    space = hilbert.Spin(n, total_sz=0)
    op = hamiltonian.heisenberg(space, lattice.chain(n), 1.0)
    shifts = np.arange(n)[:, None]
    sectors = [(ring(n), momentum_chars(shifts, (m,), (n,)), None) for m in range(n)]
    results = sector_spectra(op, space, sectors)
    lowest = [energies[0] for energies, _ in results]
    assert sum(dim for _, dim in results) == space.n_states
    assert int(np.argmin(lowest)) == n // 2
    assert np.min(lowest) == pytest.approx(ground_state(op)[0][0], abs=1e-10)


def test_heisenberg_chain_16_ground_energy():
    """k = 0, inversion +1, flip +1 holds the L = 16 ground state; E0 = -7.1422963606
    (full-space Lanczos, nqs.exact; -0.44639352 per site)."""
    n = 16
    space = hilbert.Spin(n, total_sz=0)
    op = hamiltonian.heisenberg(space, lattice.chain(n), 1.0)
    energies, dim = sector_ground_state(
        op, space, ring_dihedral(n), np.ones(2 * n), spin_flip=1, k=2
    )
    assert dim == 257  # orbits of 16-site zero-magnetisation necklaces in this sector
    assert energies[0] == pytest.approx(ground_state(op)[0][0], abs=1e-9)
    assert energies[0] == pytest.approx(-7.142296360, abs=1e-8)


# -- bad input -------------------------------------------------------------------------
def test_bad_input():
    space = hilbert.Spin(6, total_sz=0)
    perms = ring(6)
    with pytest.raises(ValueError, match="total_sz = 0"):
        sector_basis(hilbert.Spin(6), perms, np.ones(6), spin_flip=1)
    with pytest.raises(ValueError, match="not closed"):
        sector_basis(space, perms[:3], np.ones(3))
    with pytest.raises(ValueError, match="representation"):
        sector_basis(space, perms, np.exp(-1j * np.arange(6)))
    with pytest.raises(NotImplementedError):
        sector_basis(space, perms, np.full(6, 2.0))
    sec = [s for s in symmetry.all_sectors(lattice.square(3), "space") if s.dim > 1][0]
    with pytest.raises(NotImplementedError, match="one-dimensional"):
        sector_basis(hilbert.Spin(9), sec)


def test_symmetry_module_momentum_convention_matches_projection():
    """A nqs.symmetry sector at k = 2π/8 of the chiral chain (k and -k differ)."""
    space, op = chiral_chain(8)
    sec = symmetry.sector(lattice.chain(8), "translation", momentum=(1,))
    ours = spectrum(op, space, sec.perms, sec.characters)
    ref = dense_sector_spectrum(op, space, sec.perms, sec.characters)
    np.testing.assert_allclose(ours, ref, atol=1e-10)
