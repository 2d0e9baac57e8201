"""Sector exact diagonalisation against dense matrices built independently.

Groups are built here from simple formulas (ring translations and inversion, torus
translations, C4v about a site, S3) or taken from ``nqs.symmetry`` (space groups,
automorphisms of the cube, Petersen and icosahedron graphs, whose irreps reach
d = 6); references are the dense matrix of the operator restricted to the range of
the dense projector P = (d/|G|) Σ_g conj(χ_g) T_g (each level d times for an irrep of
dimension d), and the full dense spectrum.
"""

import functools
import itertools

import numpy as np
import pytest

from nqs import build_sectors, hamiltonian, hilbert, lattice, symmetry
from nqs.exact import ground_state
from nqs.exact_irrep import irrep_projector, irrep_reduction
from nqs.exact_sector import (
    connections_fn,
    sector_basis,
    sector_dimension,
    sector_ground_state,
    sector_matrix,
    sector_spectra,
)
from nqs.operator import LocalOperator, identity


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
def dense_projector(space, perms, chars, spin_flip=None, is_real=False):
    """(Pψ)(σ) = (d/|G|) Σ conj(χ_g) ψ(τ_g σ), d = χ(identity), times (1 + s F)/2."""
    states = space.all_states()
    index = {s.tobytes(): i for i, s in enumerate(states.astype(np.int8))}
    elements = [(p, c, 1) for p, c in zip(perms, chars, strict=True)]
    if spin_flip is not None:
        elements += [(p, spin_flip * c, -1) for p, c in zip(perms, chars, strict=True)]
    d = chars[np.flatnonzero(np.all(perms == np.arange(perms.shape[1]), axis=1))[0]]
    proj = np.zeros((len(states), len(states)), float if is_real else complex)
    for p, c, f in elements:
        images = (f * states[:, p]).astype(np.int8)
        cols = [index[s.tobytes()] for s in images]
        value = d * np.conj(c) / len(elements)
        proj[np.arange(len(states)), cols] += value.real if is_real else value
    return proj


def dense_sector_spectrum(op, space, perms, chars, spin_flip=None):
    """Spectrum of H on the range of P (each level d times for a d-dim irrep)."""
    dense = op.to_dense()
    is_real = np.all(np.imag(chars) == 0) and np.isrealobj(dense)
    proj = dense_projector(space, perms, chars, spin_flip, is_real)
    w, v = np.linalg.eigh((proj + proj.conj().T) / 2)
    q = v[:, w > 0.5]
    return np.linalg.eigvalsh(q.conj().T @ dense @ q)


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


# -- irreps of dimension d > 1 ---------------------------------------------------------
def cube_edges():
    return [
        (a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1
    ]


def petersen_edges():
    """Outer 5-cycle, inner pentagram, spokes: automorphisms S5 (irreps up to d = 6)."""
    return (
        [(i, (i + 1) % 5) for i in range(5)]
        + [(5 + i, 5 + (i + 2) % 5) for i in range(5)]
        + [(i, i + 5) for i in range(5)]
    )


def icosahedron_edges():
    """Vertices (0, ±1, ±φ) and cyclic; edges of length 2: automorphisms I_h."""
    phi = (1 + 5**0.5) / 2
    v = np.array(
        [
            p
            for a in (-1, 1)
            for b in (-phi, phi)
            for p in ((0, a, b), (a, b, 0), (b, 0, a))
        ]
    )
    dist = np.linalg.norm(v[:, None] - v[None], axis=-1)
    return [
        (i, j)
        for i in range(12)
        for j in range(i + 1, 12)
        if abs(dist[i, j] - 2) < 1e-9
    ]


@functools.cache
def graph_model(name, total_sz):
    """(lattice, space, op): Heisenberg on a named graph, J1-J2 (J2 = 0.3) on a
    "kind-LxL" Bravais lattice."""
    graphs = {"cube": cube_edges, "petersen": petersen_edges, "ico": icosahedron_edges}
    if name in graphs:
        edges = graphs[name]()
        lat = lattice.custom(int(np.max(edges)) + 1, edges)
    else:
        kind, extent = name.split("-")
        lat = getattr(lattice, kind)(tuple(int(x) for x in extent.split("x")))
    space = hilbert.Spin(lat.n_sites, total_sz=total_sz)
    return lat, space, hamiltonian.j1j2(space, lat, 1.0, 0.3 * (lat.name != "custom"))


def levels(op, space, *sector):
    """Every level of a sector, one per multiplet (one compiled get_conn per op)."""
    conn = _CONN.setdefault(id(op), (op, connections_fn(op)))[1]
    return sector_ground_state(op, space, *sector, k=10**6, conn=conn)


def test_square_c4v_e_matches_projection():
    """E of C4v on the 3x3 torus (characters 2, -2 on E, C2, 0 elsewhere): each
    level of the dense projection twice, ours once per multiplet."""
    space, op = j1j2_model("square", 3, 0.5, 0.4)
    perms, rs = square_space_group(3)
    r, s = rs.T
    chars = (2.0 * ((r == 0) & (s == 0)) - 2.0 * ((r == 2) & (s == 0))).astype(complex)
    ours, n_levels = levels(op, space, perms, chars)
    ref = dense_sector_spectrum(op, space, perms, chars)
    assert ref.size == 2 * n_levels == 2 * ours.size > 0
    np.testing.assert_allclose(ref[0::2], ref[1::2], atol=1e-10)
    np.testing.assert_allclose(ours, ref[0::2], atol=1e-10)


@pytest.mark.parametrize(
    "name, total_sz, flip",
    [
        ("triangular-3x3", 0.5, False),  # E1, E2 of C6v; E of C3v at K (complex χ)
        ("honeycomb-2x2", 0, True),
        ("petersen", 1, False),  # d = 4, 5, 6; Q != 1
    ],
)
def test_multidimensional_irreps_match_projection(name, total_sz, flip):
    lat, space, op = graph_model(name, total_sz)
    sectors = [
        s for s in symmetry.all_sectors(lat, "space", spin_flip=flip) if s.dim > 1
    ]
    assert len(sectors) >= 4
    for sec in sectors:
        ours, n_levels = levels(op, space, sec)
        ref = dense_sector_spectrum(op, space, sec.perms, sec.characters, sec.spin_flip)
        assert ref.size == sec.dim * n_levels == sec.dim * ours.size, sec
        for copy in range(1, sec.dim):
            np.testing.assert_allclose(ref[copy :: sec.dim], ref[:: sec.dim], atol=1e-9)
        np.testing.assert_allclose(ours, ref[:: sec.dim], atol=1e-9)


@pytest.mark.parametrize(
    "name, total_sz, irreps",
    [
        ("triangular-3x3", 0.5, ("E",)),  # Q = 1, complex λ at K = (1, 2)
        ("petersen", 0, ("G2", "G6")),  # Q != 1, d = 4 and 6
        ("ico", 1, ("G2", "G6")),  # Q != 1, d = 3 and 4 (complex λ)
    ],
)
def test_irrep_projector_is_the_dense_one_on_the_orbit_basis(name, total_sz, irreps):
    """<e_s|P|e_r> from the formula equals irrep_projector, with e_r = P_λ δ_r / |.|
    the orbit states of the subgroup sector (P_λ dense, from the formula)."""
    lat, space, _ = graph_model(name, total_sz)
    states = space.all_states()
    index = {s.tobytes(): i for i, s in enumerate(states.astype(np.int8))}
    weights = 2 ** np.arange(lat.n_sites)
    for sec in symmetry.all_sectors(lat, "space"):
        if sec.irrep not in irreps:
            continue
        red = irrep_reduction(sec)
        basis = sector_basis(space, red.perms, red.characters)
        sub = dense_projector(space, red.perms, red.characters)
        bits = (basis.reps[:, None] // weights) % 2
        rows = [index[s.tobytes()] for s in (2 * bits - 1).astype(np.int8)]
        e = sub[:, rows] / np.sqrt(np.diag(sub)[rows].real)
        np.testing.assert_allclose(e.conj().T @ e, np.eye(basis.dimension), atol=1e-9)
        full = dense_projector(space, sec.perms, sec.characters)
        np.testing.assert_allclose(
            irrep_projector(basis, red).toarray(), e.conj().T @ full @ e, atol=1e-9
        )


@pytest.mark.parametrize(
    "name, total_sz, flip",
    [
        ("square-3x3", 0.5, False),
        ("triangular-3x3", 0.5, False),
        ("honeycomb-2x2", 0, True),
        ("cube", 0, True),
        ("petersen", 0, True),
    ],
)
def test_union_with_multidimensional_irreps_is_full_spectrum(name, total_sz, flip):
    """Every level of a d-dimensional irrep sector counted d times: the union over
    all sectors is the dense spectrum, and the level counts are the fixed-point
    counts of nqs exact --sectors."""
    lat, space, op = graph_model(name, total_sz)
    n_up = None if total_sz is None else int(total_sz + lat.n_sites / 2)
    energies = []
    sectors = symmetry.all_sectors(lat, "space", spin_flip=flip)
    assert any(s.dim > 1 for s in sectors)
    for sec in sectors:
        ours, n_levels = levels(op, space, sec)
        assert n_levels == build_sectors.n_levels(sec, lat.n_sites, n_up) == ours.size
        energies.append(np.repeat(ours, sec.dim))
    energies = np.sort(np.concatenate(energies))
    assert energies.size == space.n_states
    np.testing.assert_allclose(energies, np.linalg.eigvalsh(op.to_dense()), atol=1e-10)


def test_irrep_lanczos_path_gives_the_lowest_multiplet():
    """Icosahedron without a total_sz: subgroup sectors of ~400 states, so the
    shifted Lanczos on P (H - c) P + c; its lowest level in each irrep is that of
    S^z = 0 (dense path), since every integer-spin multiplet has an S^z = 0 state.
    H + 8 has positive levels only, which the complement of P must not undercut."""
    lat, space, op = graph_model("ico", None)
    _, space0, op0 = graph_model("ico", 0)
    op, op0 = op + 8.0 * identity(space), op0 + 8.0 * identity(space0)
    conn, conn0 = connections_fn(op), connections_fn(op0)
    checked = 0
    for sec in symmetry.all_sectors(lat, "space"):
        if sec.dim == 1:
            continue
        red = irrep_reduction(sec)
        assert not red.is_identity  # the projector is used
        assert sector_basis(space, red.perms, red.characters).dimension > 300
        assert sector_basis(space0, red.perms, red.characters).dimension < 200
        ours, _ = sector_ground_state(op, space, sec, conn=conn)
        ref, _ = sector_ground_state(op0, space0, sec, conn=conn0)
        assert ours[0] == pytest.approx(ref[0], abs=1e-11)
        checked += 1
    assert checked == 8


def test_triangle_e_of_s3_holds_the_two_doublets():
    """Heisenberg triangle: H = (J/2)(S(S+1) - 9/4); the two S = 1/2 doublets
    (E = -3/4) span the E irrep of S3, the S = 3/2 quartet (E = 3/4) is A1. Listing
    every element twice (a group acting through a quotient) changes nothing."""
    space = hilbert.Spin(3)
    op = hamiltonian.heisenberg(space, lattice.custom(3, [(0, 1), (1, 2), (0, 2)]), 1.0)
    perms = np.array(list(itertools.permutations(range(3))))
    fixed = (perms == np.arange(3)).sum(axis=1)  # 3, 1 or 0: E, transposition, C3
    chars = np.select([fixed == 3, fixed == 1], [2.0, 0.0], -1.0)
    for p, c in ((perms, chars), (np.tile(perms, (2, 1)), np.tile(chars, 2))):
        energies, n_levels = sector_ground_state(op, space, p, c, k=5)
        assert n_levels == 2  # S^z = ±1/2 of the E pair of doublets
        np.testing.assert_allclose(energies, [-0.75, -0.75], atol=1e-12)


def test_irrep_bad_input_and_empty_sectors():
    space = hilbert.Spin(6, total_sz=0)
    op = hamiltonian.heisenberg(space, lattice.chain(6), 1.0)
    with pytest.raises(ValueError, match="irreducible"):
        sector_ground_state(op, space, ring(6), np.full(6, 2.0))
    with pytest.raises(ValueError, match="positive integer"):
        irrep_reduction(ring(6), np.full(6, 1.5))
    with pytest.raises(ValueError, match="not closed"):
        irrep_reduction(ring(6)[:4], np.array([2.0, 0, 0, 0]))
    # S3's E on elements that all act as the identity: no state transforms as E
    e_of_s3 = np.array([2.0, -1, -1, 0, 0, 0])
    trivial = np.tile(np.arange(6), (6, 1))
    assert irrep_reduction(trivial, e_of_s3) is None
    energies, dim = sector_ground_state(op, space, trivial, e_of_s3)
    assert dim == 0 and energies.size == 0
