"""Lattice symmetry groups and sectors, checked against facts of group theory.

Orders, group axioms and character orthogonality are textbook facts; the C4v and C6v
character values are the textbook tables; Hamiltonians and sector projectors are
checked as dense/sparse matrices built here from the permutations alone.
"""

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp

from nqs import hamiltonian, hilbert, lattice, symmetry
from nqs.operator import sigma_x, sigma_z

# -- helpers built independently of nqs.symmetry ------------------------------------


def compose(p, q):
    """Site map p∘q (q first)."""
    return p[q]


def element_kind(r: np.ndarray) -> tuple[str, float]:
    """('rot', angle in degrees in [0, 360)) or ('mirror', axis angle in [0, 180))."""
    if np.linalg.det(r) > 0:
        return "rot", round(math.degrees(math.atan2(r[1, 0], r[0, 0])) % 360, 6)
    return "mirror", round(math.degrees(math.atan2(r[1, 0], r[0, 0]) / 2) % 180, 6)


def edge_sets(lat, perm) -> dict:
    """{order: set of unordered image pairs} of the lattice's edges under perm."""
    out = {}
    for i, j, k in lat.edges:
        out.setdefault(k, set()).add(frozenset((int(perm[i]), int(perm[j]))))
    return out


def basis_permutation(perm: np.ndarray, n_sites: int) -> sp.csr_matrix:
    """U|s⟩ = |s'⟩ on spin-1/2 bit strings, bit perm[i] of s' = bit i of s."""
    states = np.arange(2**n_sites)
    bits = (states[:, None] >> np.arange(n_sites)) & 1
    image = np.zeros_like(states)
    for i in range(n_sites):
        image |= bits[:, i] << perm[i]
    ones = np.ones(len(states))
    return sp.csr_matrix((ones, (image, states)), shape=(len(states),) * 2)


def dense_projector(sec, n_sites: int) -> np.ndarray:
    """(d / M) Σ_m conj(χ_m) U(g_m) (1 + s F) / 2 as a dense matrix."""
    dim = 2**n_sites
    proj = np.zeros((dim, dim), dtype=np.complex128)
    for perm, chi in zip(sec.perms, sec.characters, strict=True):
        proj += np.conj(chi) * basis_permutation(perm, n_sites).toarray()
    proj *= sec.dim / len(sec.perms)
    if sec.spin_flip is not None:
        flip = np.eye(dim)[::-1]  # s → s XOR (2^N - 1)
        proj = proj @ (np.eye(dim) + sec.spin_flip * flip) / 2
    return proj


def operator_permutation(op, perm: np.ndarray) -> sp.csr_matrix:
    """U(g) in the basis of ``op.hilbert.all_states()``: (g·σ)_{perm[i]} = σ_i."""
    states = np.asarray(op.hilbert.all_states())
    moved = np.empty_like(states)
    moved[:, perm] = states
    weights = 2 ** np.arange(states.shape[1])
    codes, moved_codes = (states > 0) @ weights, (moved > 0) @ weights
    order = np.argsort(codes)
    image = order[np.searchsorted(codes[order], moved_codes)]
    assert np.array_equal(codes[image], moved_codes)
    n = len(states)
    return sp.csr_matrix((np.ones(n), (image, np.arange(n))), shape=(n, n))


# -- lattices ------------------------------------------------------------------------

ORDER_CASES = [
    pytest.param(lattice.chain(3), 6, id="chain-3"),
    pytest.param(lattice.chain(8), 16, id="chain-8"),
    pytest.param(lattice.square(3), 72, id="square-3"),
    pytest.param(lattice.square(4), 128, id="square-4"),
    pytest.param(lattice.triangular(3), 108, id="triangular-3"),
    pytest.param(lattice.triangular(4), 192, id="triangular-4"),
    pytest.param(lattice.honeycomb(3), 108, id="honeycomb-3"),
    pytest.param(lattice.kagome(3), 108, id="kagome-3"),
]


@pytest.mark.parametrize(("lat", "order"), ORDER_CASES)
def test_space_group_order(lat, order):
    assert symmetry.group(lat, "space").order == order


@pytest.mark.parametrize(
    ("lat", "point_order", "space_order"),
    [
        pytest.param(lattice.square((4, 6)), 4, 96, id="square-4x6-C2v"),
        pytest.param(lattice.square(3, pbc=False), 8, 8, id="square-3-open"),
        pytest.param(lattice.chain(5, pbc=False), 2, 2, id="chain-5-open"),
        pytest.param(lattice.square((3, 4), pbc=(True, False)), 4, 12, id="cylinder"),
        # 60° rotations permute the sites of a 3x6 torus but not its bonds: C2v stays
        pytest.param(lattice.triangular((3, 6)), 4, 72, id="triangular-3x6-C2v"),
    ],
)
def test_finite_lattice_keeps_only_automorphisms(lat, point_order, space_order):
    point = symmetry.group(lat, "point")
    assert point.order == point_order
    space = symmetry.group(lat, "space")
    assert space.order == space_order
    for perm in space.perms:
        assert edge_sets(lat, perm) == edge_sets(lat, np.arange(lat.n_sites))


def test_translation_strides():
    lat = lattice.chain(6)
    assert symmetry.translation_group(lat, strides=2).order == 3
    assert symmetry.translation_group(lattice.square(4), strides=(2, 1)).order == 8
    with pytest.raises(ValueError, match="stride 4 does not divide the extent 6"):
        symmetry.translation_group(lat, strides=4)


def _custom_ring(n):
    return lattice.custom(n, [(i, (i + 1) % n) for i in range(n)])


def _petersen():
    outer = [(i, (i + 1) % 5) for i in range(5)]
    spokes = [(i, i + 5) for i in range(5)]
    inner = [(5 + i, 5 + (i + 2) % 5) for i in range(5)]
    return lattice.custom(10, outer + spokes + inner)


@pytest.mark.parametrize(
    ("lat", "order"),
    [
        pytest.param(_custom_ring(7), 14, id="ring-7-D7"),
        pytest.param(_petersen(), 120, id="petersen-S5"),
        pytest.param(
            lattice.custom(4, [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2, 2)]),
            4,
            id="square-with-diagonal",
        ),
        pytest.param(  # as a plain graph K4 (24), with coloured diagonals D4 (8)
            lattice.custom(4, [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2, 2), (1, 3, 2)]),
            8,
            id="square-with-coloured-diagonals",
        ),
    ],
)
def test_custom_automorphisms(lat, order):
    group = symmetry.group(lat, "space")
    assert group.order == order
    for perm in group.perms:
        assert edge_sets(lat, perm) == edge_sets(lat, np.arange(lat.n_sites))


GROUP_CASES = [
    pytest.param(lambda: symmetry.group(lattice.chain(6), "space"), id="chain-6"),
    pytest.param(lambda: symmetry.group(lattice.square(3), "space"), id="square-3"),
    pytest.param(lambda: symmetry.group(lattice.square(4), "point"), id="C4v"),
    pytest.param(
        lambda: symmetry.group(lattice.triangular(3), "space"), id="triangular-3"
    ),
    pytest.param(lambda: symmetry.group(lattice.kagome(2), "space"), id="kagome-2"),
    pytest.param(lambda: symmetry.group(_petersen(), "space"), id="petersen"),
]


@pytest.mark.parametrize("make", GROUP_CASES)
def test_group_axioms(make):
    group = make()
    perms, table, n = group.perms, group.product, group.order
    assert np.array_equal(perms[0], np.arange(group.n_sites))
    assert len(np.unique(perms, axis=0)) == n
    for g in range(n):  # closure: the table is the composition
        assert np.array_equal(perms[table[g]], perms[g][perms])
        assert np.array_equal(compose(perms[g], perms[group.inverse[g]]), perms[0])
    left = table[table[:, :, None], np.arange(n)[None, None, :]]  # (gh)k
    right = table[np.arange(n)[:, None, None], table[None, :, :]]  # g(hk)
    assert np.array_equal(left, right)


@pytest.mark.parametrize("make", GROUP_CASES)
def test_classes_and_character_table(make):
    group = make()
    n, perms = group.order, group.perms
    sizes = np.array([len(c) for c in group.classes])
    assert sizes.sum() == n and np.all(n % sizes == 0)  # class equation
    for members in group.classes:  # conjugation closes each class
        g = perms[members[0]]
        conj = {compose(compose(x, g), np.argsort(x)).tobytes() for x in perms}
        assert conj == {perms[m].tobytes() for m in members}
    chi = group.characters
    dims = np.array(group.irrep_dims)
    assert chi.shape == (len(group.classes),) * 2  # n_irreps = n_classes
    assert np.sum(dims**2) == n
    assert np.allclose(chi[:, 0], dims)
    rows = (chi * sizes) @ chi.conj().T
    assert np.allclose(rows, n * np.eye(len(chi)), atol=1e-9)
    cols = chi.T @ chi.conj()
    assert np.allclose(cols, np.diag(n / sizes), atol=1e-9)
    # the permutation character (fixed sites) has non-negative integer multiplicities
    fixed = np.array(
        [np.sum(perms[c[0]] == np.arange(group.n_sites)) for c in group.classes]
    )
    mult = (chi.conj() * sizes) @ fixed / n
    assert np.allclose(mult, np.round(mult.real), atol=1e-9) and np.all(
        mult.real > -0.5
    )
    one_dim = np.flatnonzero(dims == 1)
    for row in one_dim:  # 1-D characters are homomorphisms
        values = group.character(int(row))
        assert np.allclose(values[:, None] * values[None, :], values[group.product])


# textbook character tables, columns keyed by the geometry of the element
C4V = {
    "A1": {"E": 1, "C4": 1, "C2": 1, "sv": 1, "sd": 1},
    "A2": {"E": 1, "C4": 1, "C2": 1, "sv": -1, "sd": -1},
    "B1": {"E": 1, "C4": -1, "C2": 1, "sv": 1, "sd": -1},
    "B2": {"E": 1, "C4": -1, "C2": 1, "sv": -1, "sd": 1},
    "E": {"E": 2, "C4": 0, "C2": -2, "sv": 0, "sd": 0},
}
C6V = {
    "A1": {"E": 1, "C6": 1, "C3": 1, "C2": 1, "sv": 1, "sd": 1},
    "A2": {"E": 1, "C6": 1, "C3": 1, "C2": 1, "sv": -1, "sd": -1},
    "B1": {"E": 1, "C6": -1, "C3": 1, "C2": -1, "sv": 1, "sd": -1},
    "B2": {"E": 1, "C6": -1, "C3": 1, "C2": -1, "sv": -1, "sd": 1},
    "E1": {"E": 2, "C6": 1, "C3": -1, "C2": -2, "sv": 0, "sd": 0},
    "E2": {"E": 2, "C6": -1, "C3": -1, "C2": 2, "sv": 0, "sd": 0},
}


def _c4v_column(kind, angle):
    if kind == "rot":
        return {0: "E", 90: "C4", 270: "C4", 180: "C2"}[round(angle)]
    return "sv" if round(angle) in (0, 90) else "sd"  # axes along x, y: σ_v


def _c6v_column(kind, angle):
    if kind == "rot":
        return {0: "E", 60: "C6", 300: "C6", 120: "C3", 240: "C3", 180: "C2"}[
            round(angle)
        ]
    return "sv" if round(angle) in (0, 60, 120) else "sd"  # σ_v: axis along a1 = x


@pytest.mark.parametrize(
    ("lat", "table", "column"),
    [
        pytest.param(lattice.square(4), C4V, _c4v_column, id="square-C4v"),
        pytest.param(lattice.square(3, pbc=False), C4V, _c4v_column, id="open-C4v"),
        pytest.param(lattice.triangular(3), C6V, _c6v_column, id="triangular-C6v"),
        pytest.param(lattice.honeycomb(3), C6V, _c6v_column, id="honeycomb-C6v"),
        pytest.param(lattice.kagome(3), C6V, _c6v_column, id="kagome-C6v"),
    ],
)
def test_mulliken_labels_match_textbook(lat, table, column):
    group = symmetry.point_group(lat)
    assert sorted(group.irrep_labels) == sorted(table)
    assert group.irrep_labels[0] == "A1"
    columns = [column(*element_kind(r)) for r in group.linear]
    for label, expected in table.items():
        values = group.character(label)
        assert np.allclose(values, [expected[c] for c in columns]), label


@pytest.mark.parametrize("make", [lattice.honeycomb, lattice.kagome])
def test_default_centre_is_a_hexagon_centre(make):
    # only about a hexagon centre do these lattices have a 6-fold axis; it fixes no site
    lat = make(3)
    group = symmetry.point_group(lat)
    kinds = [element_kind(r) for r in group.linear]
    c6 = group.perms[kinds.index(("rot", 60.0))]
    assert not np.any(c6 == np.arange(lat.n_sites))
    centre = lat.positions[0]  # about a site: C3v (honeycomb) or C2v (kagome)
    assert symmetry.point_group(lat, centre=centre).order < 12


def test_small_group_labels():
    chain = symmetry.point_group(lattice.chain(6))
    assert chain.irrep_labels == ("A", "B")
    assert np.allclose(chain.character("B"), [1, -1])
    c2v = symmetry.point_group(lattice.square((4, 6)))
    assert c2v.name == "C2v" and c2v.irrep_labels == ("A1", "A2", "B1", "B2")
    kinds = [element_kind(r) for r in c2v.linear]
    mirror_y = kinds.index(("mirror", 0.0))  # y → -y, axis along x: σ_v
    rot = kinds.index(("rot", 180.0))
    assert c2v.character("B1")[mirror_y] == 1 and c2v.character("B1")[rot] == -1
    assert c2v.character("A2")[mirror_y] == -1 and c2v.character("A2")[rot] == 1


# -- Hamiltonians commute with the groups --------------------------------------------

HAM_LATTICES = [
    pytest.param(lattice.chain(8), id="chain-8"),
    pytest.param(lattice.chain(7, pbc=False), id="chain-7-open"),
    pytest.param(lattice.square(3), id="square-3"),
    pytest.param(lattice.square((2, 4)), id="square-2x4"),
    pytest.param(lattice.triangular(3), id="triangular-3"),
    pytest.param(lattice.honeycomb(2), id="honeycomb-2"),
    pytest.param(lattice.kagome(2), id="kagome-2"),
]


def _hamiltonians(lat):
    space = hilbert.Spin(lat.n_sites)
    return {
        "ising": hamiltonian.ising(space, lat, J=1.0, h=0.7),
        "heisenberg": hamiltonian.heisenberg(space, lat, J=1.0),
        "j1j2": hamiltonian.j1j2(space, lat, J1=1.0, J2=0.4),
    }


@pytest.mark.parametrize("lat", HAM_LATTICES)
def test_hamiltonians_commute_with_space_group(lat):
    group = symmetry.group(lat, "space")
    assert group.order > 1
    for name, op in _hamiltonians(lat).items():
        ham = op.to_sparse()
        for perm in group.perms:
            u = operator_permutation(op, perm)
            diff = u @ ham - ham @ u
            assert abs(diff).max() < 1e-12, name
        assert symmetry.is_symmetry(op, group.perms), name


def test_broken_symmetry_is_detected():
    lat = lattice.square(3, pbc=False)
    space = hilbert.Spin(lat.n_sites)
    group = symmetry.group(lat, "point")
    op = hamiltonian.heisenberg(space, lat, J=1.0)
    assert symmetry.is_symmetry(op, group.perms)
    # a custom edge list without one bond: most point operations break it
    edges = lat.edges_of_order(1)[1:]
    broken = hamiltonian.heisenberg(space, lattice.custom(lat.n_sites, edges), J=1.0)
    bad = set(symmetry.symmetry_violations(broken, group.perms))
    ham = broken.to_sparse()
    for g, perm in enumerate(group.perms):
        u = operator_permutation(broken, perm)
        commutes = abs(u @ ham - ham @ u).max() < 1e-12
        assert commutes == (g not in bad)
    assert 0 < len(bad) < group.order
    # a field on one site only breaks every translation but the identity
    chain = lattice.chain(5)
    space = hilbert.Spin(5)
    field = hamiltonian.ising(space, chain, J=1.0, h=0.0)
    field = field + 0.3 * sigma_x(space, 2)
    bad = symmetry.symmetry_violations(field, symmetry.translation_group(chain).perms)
    assert bad == (1, 2, 3, 4)


# -- sectors -------------------------------------------------------------------------


def _check_resolution(sectors, n_sites, pairwise):
    dim = 2**n_sites
    total = np.zeros((dim, dim), dtype=np.complex128)
    projectors = [dense_projector(s, n_sites) for s in sectors]
    for proj in projectors:
        assert np.allclose(proj @ proj, proj, atol=1e-10)
        assert np.allclose(proj, proj.conj().T, atol=1e-10)
        total += proj
    assert np.allclose(total, np.eye(dim), atol=1e-10)
    assert math.isclose(sum(np.trace(p).real for p in projectors), dim)
    if pairwise:
        for a, b in itertools.combinations(range(len(projectors)), 2):
            assert np.allclose(projectors[a] @ projectors[b], 0, atol=1e-10)


@pytest.mark.parametrize(
    ("lat", "kind", "flip", "pairwise"),
    [
        pytest.param(lattice.chain(6), "translation", False, True, id="chain-6-k"),
        pytest.param(lattice.chain(6), "space", True, True, id="chain-6-space-flip"),
        pytest.param(lattice.square(2), "translation", False, True, id="square-2-k"),
        pytest.param(lattice.square(3), "space", False, False, id="square-3-space"),
        pytest.param(lattice.square(2), "space", True, False, id="square-2-space-flip"),
    ],
)
def test_sector_projectors_resolve_identity(lat, kind, flip, pairwise):
    sectors = symmetry.all_sectors(lat, kind, spin_flip=flip)
    _check_resolution(sectors, lat.n_sites, pairwise)


def test_momentum_sign_convention_single_magnon():
    # ψ = Σ_r e^{ikr} |one spin flipped at r⟩ has momentum k = 2πn/L
    n_sites = 6
    for n in range(n_sites):
        psi = np.zeros(2**n_sites, dtype=np.complex128)
        for r in range(n_sites):
            psi[1 << r] = np.exp(2j * np.pi * n * r / n_sites)
        for m in range(n_sites):
            sec = symmetry.sector(lattice.chain(n_sites), "translation", momentum=m)
            proj = dense_projector(sec, n_sites)
            assert np.allclose(proj @ psi, psi if m == n else 0)


def test_heisenberg_chain_ground_state_momentum_pi():
    # a Heisenberg ring of 4n+2 sites has its ground state at k = π
    lat = lattice.chain(6)
    op = hamiltonian.heisenberg(hilbert.Spin(6), lat, J=1.0)
    evals, evecs = np.linalg.eigh(op.to_dense())
    assert evals[1] - evals[0] > 1e-6
    ground = evecs[:, 0]
    weights = []
    for n in range(6):
        sec = symmetry.sector(lat, "translation", momentum=n)
        u = [operator_permutation(op, p).toarray() for p in sec.perms]
        proj = sum(np.conj(c) * m for c, m in zip(sec.characters, u, strict=True)) / 6
        weights.append(np.vdot(ground, proj @ ground).real)
    assert np.allclose(weights, [0, 0, 0, 1, 0, 0], atol=1e-10)


def test_little_groups_of_the_square():
    lat = lattice.square(4)
    expected = {(0, 0): "C4v", (2, 2): "C4v", (2, 0): "C2v", (1, 0): "Cs", (1, 1): "Cs"}
    expected[(1, 2)] = "Cs"
    for momentum, name in expected.items():
        sec = symmetry.sector(lat, "space", momentum=momentum)
        assert sec.little_group.name == name, momentum
        assert len(sec.perms) == 16 * sec.little_group.order
    e = symmetry.sector(lat, "space", momentum=(2, 2), irrep="E")
    assert e.dim == 2


def test_sector_objects_are_static():
    lat = lattice.square(3)
    a = symmetry.sector(lat, "space", momentum=(1, 0), irrep="A'")
    b = symmetry.sector(lat, "space", momentum=(1, 0), irrep="A'")
    c = symmetry.sector(lat, "space", momentum=(1, 0), irrep="A''")
    assert a == b and hash(a) == hash(b) and a != c
    assert a.label == {"momentum": [1, 0], "irrep": "A'", "spin_flip": None}
    g1, g2 = symmetry.group(lat, "space"), symmetry.group(lat, "space")
    assert g1 == g2 and hash(g1) == hash(g2)
    assert g1 != symmetry.group(lat, "translation")
    with pytest.raises(ValueError):
        g1.perms[0, 0] = 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"momentum": (4, 0)}, r"momentum\[0\] = 4 is not allowed: must be in 0..3"),
        ({"momentum": (0,)}, "momentum must be 2 integer"),
        ({"momentum": (0.5, 0)}, "momentum must be 2 integer"),
        ({"momentum": (1, 0), "irrep": "E"}, "valid: A', A''"),
        ({"irrep": "T1"}, "valid: A1, A2, B1, B2, E"),
        ({"spin_flip": 2}, "spin_flip must be"),
        ({"group": "lattice"}, "group must be one of translation, point, space"),
        ({"group": "point", "momentum": (1, 0)}, r"momentum\[0\] = 1 is not allowed"),
    ],
)
def test_bad_sector_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        symmetry.sector(lattice.square(4), **kwargs)


def test_open_chain_has_no_momentum():
    lat = lattice.chain(5, pbc=False)
    with pytest.raises(ValueError, match="no translations"):
        symmetry.sector(lat, "space", momentum=1)
    labels = [(s.momentum, s.irrep) for s in symmetry.all_sectors(lat, "space")]
    assert labels == [((0,), "A"), ((0,), "B")]


def test_stars_of_the_square():
    # C4v orbits of the 16 momenta of a 4x4 torus: sizes 1, 4, 2, 4, 4, 1
    sectors = symmetry.all_sectors(lattice.square(4), "space", one_per_star=True)
    stars = {s.momentum: s.star for s in sectors}
    assert sorted(len(star) for star in stars.values()) == [1, 1, 2, 4, 4, 4]
    assert stars[(0, 1)] == ((0, 1), (0, 3), (1, 0), (3, 0))
    assert stars[(1, 2)] == ((1, 2), (2, 1), (2, 3), (3, 2))


def test_one_sector_per_star_counts_the_full_dimension():
    lat = lattice.square(3)
    sectors = symmetry.all_sectors(lat, "space", one_per_star=True)
    assert {s.momentum for s in sectors} == {(0, 0), (0, 1), (1, 1)}
    total = sum(len(s.star) * np.trace(dense_projector(s, 9)).real for s in sectors)
    assert math.isclose(total, 512)


def test_spin_flip_check():
    lat = lattice.chain(4)
    space = hilbert.Spin(4)
    flip = np.eye(16)[::-1]
    for op, expected in [
        (hamiltonian.ising(space, lat, J=1.0, h=0.5), True),
        (hamiltonian.heisenberg(space, lat, J=1.0), True),
        (hamiltonian.ising(space, lat, J=1.0, h=0.5) + 0.2 * sigma_z(space, 1), False),
    ]:
        ham = op.to_dense()  # all_states of an unconstrained spin-1/2 space
        assert np.allclose(flip @ ham @ flip, ham) == expected
        assert symmetry.spin_flip_is_symmetry(op) == expected
