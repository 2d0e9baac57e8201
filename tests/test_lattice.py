"""Lattices: closed-form edge counts, coordination numbers, an independent brute-force
neighbour search, bipartitions and input validation."""

import itertools
import math
from collections import Counter

import numpy as np
import pytest

from nqs import lattice as lat

S3 = math.sqrt(3)


def counts(lattice):
    """{order: number of edges}."""
    return dict(Counter(k for _, _, k in lattice.edges))


def degrees(lattice, order):
    deg = np.zeros(lattice.n_sites, dtype=int)
    for i, j in lattice.edges_of_order(order):
        deg[i] += 1
        deg[j] += 1
    return deg


def check_edge_list(lattice):
    pairs = [(i, j) for i, j, _ in lattice.edges]
    assert all(0 <= i < j < lattice.n_sites for i, j in pairs)
    assert len(set(pairs)) == len(pairs)
    assert list(lattice.edges) == sorted(lattice.edges)


# --- closed forms ---------------------------------------------------------------------


@pytest.mark.parametrize("length", [3, 4, 5, 8, 11])
def test_chain_counts(length):
    periodic = lat.chain(length, pbc=True)
    check_edge_list(periodic)
    c = counts(periodic)
    assert c[1] == length
    assert np.all(degrees(periodic, 1) == 2)
    if length >= 5:
        assert c[2] == length and np.all(degrees(periodic, 2) == 2)
    if length >= 7:
        assert c[3] == length
    open_ = lat.chain(length, pbc=False)
    check_edge_list(open_)
    c = counts(open_)
    assert (c[1], c[2]) == (length - 1, length - 2)
    assert c.get(3, 0) == max(length - 3, 0)
    assert open_.edges_of_order(1) == tuple((i, i + 1) for i in range(length - 1))


@pytest.mark.parametrize("extent", [(4, 4), (3, 5), (6, 4)], ids=str)
def test_square_counts(extent):
    lx, ly = extent
    n = lx * ly
    periodic = lat.square(extent)
    check_edge_list(periodic)
    assert counts(periodic)[1] == 2 * n and counts(periodic)[2] == 2 * n
    assert np.all(degrees(periodic, 1) == 4) and np.all(degrees(periodic, 2) == 4)
    open_ = lat.square(extent, pbc=False)
    check_edge_list(open_)
    c = counts(open_)
    assert c[1] == lx * (ly - 1) + ly * (lx - 1)
    assert c[2] == 2 * (lx - 1) * (ly - 1)
    assert degrees(open_, 1).max() == 4 and degrees(open_, 1).min() == 2


def test_square_mixed_boundaries():
    cyl = lat.square((4, 3), pbc=(True, False))
    # x periodic: 4 * 3 bonds along x, 4 * 2 along y
    assert counts(cyl)[1] == 12 + 8
    assert cyl.pbc == (True, False)


@pytest.mark.parametrize("extent", [(4, 4), (6, 3)], ids=str)
def test_triangular_counts(extent):
    lx, ly = extent
    n = lx * ly
    periodic = lat.triangular(extent)
    check_edge_list(periodic)
    assert counts(periodic)[1] == 3 * n and np.all(degrees(periodic, 1) == 6)
    open_ = lat.triangular(extent, pbc=False)
    assert counts(open_)[1] == 3 * n - 2 * lx - 2 * ly + 1
    assert degrees(open_, 1).max() == 6


@pytest.mark.parametrize("extent", [(3, 3), (4, 3)], ids=str)
def test_honeycomb_counts(extent):
    periodic = lat.honeycomb(extent)
    n = periodic.n_sites
    assert n == 2 * math.prod(extent)
    check_edge_list(periodic)
    c = counts(periodic)
    assert c[1] == 3 * n // 2 and np.all(degrees(periodic, 1) == 3)
    assert c[2] == 3 * n and np.all(degrees(periodic, 2) == 6)
    open_ = lat.honeycomb(extent, pbc=False)
    lx, ly = extent  # bonds: inside cells, along a2 between rows, along a2 - a1
    assert counts(open_)[1] == lx * ly + lx * (ly - 1) + (lx - 1) * (ly - 1)
    assert degrees(open_, 1).max() == 3


@pytest.mark.parametrize("extent", [(3, 3), (4, 3)], ids=str)
def test_kagome_counts(extent):
    periodic = lat.kagome(extent)
    n = periodic.n_sites
    assert n == 3 * math.prod(extent)
    check_edge_list(periodic)
    assert counts(periodic)[1] == 2 * n and np.all(degrees(periodic, 1) == 4)
    assert np.all(degrees(periodic, 2) == 4)
    open_ = lat.kagome(extent, pbc=False)
    assert degrees(open_, 1).max() == 4
    lx, ly = extent  # up triangles inside cells; down-triangle bonds between cells
    down = (lx - 1) * ly + lx * (ly - 1) + (lx - 1) * (ly - 1)
    assert counts(open_)[1] == 3 * lx * ly + down


# --- tiny periodic lattices: every pair once, at its minimum-image distance -----------


def test_two_site_periodic_chain():
    assert lat.chain(2).edges == ((0, 1, 1),)


def test_three_site_periodic_chain():
    assert lat.chain(3).edges == ((0, 1, 1), (0, 2, 1), (1, 2, 1))
    assert lat.chain(3, pbc=False).edges == ((0, 1, 1), (0, 2, 2), (1, 2, 1))


def test_single_site():
    assert lat.chain(1).edges == () and lat.chain(1).bipartition == (0,)


def test_two_by_two_square():
    square = lat.square((2, 2))
    assert square.edges_of_order(1) == ((0, 1), (0, 2), (1, 3), (2, 3))
    assert square.edges_of_order(2) == ((0, 3), (1, 2))
    assert counts(square) == {1: 4, 2: 2}


def test_j1j2_four_by_four():
    square = lat.square((4, 4), max_order=2)
    assert counts(square) == {1: 32, 2: 32}


# --- independent brute force ----------------------------------------------------------


def brute_force_edges(vectors, offsets, extent, pbc, max_order, reach=2):
    """Edges by explicit loops over pairs and images t in {-reach..reach} per periodic
    axis."""
    vectors, offsets = np.array(vectors), np.array(offsets)
    pos = []
    for cell in itertools.product(*(range(n) for n in extent)):
        for off in offsets:
            pos.append(np.dot(cell, vectors) + off)
    shifts = [range(-reach, reach + 1) if p else range(1) for p in pbc]
    dist = {}
    for i, j in itertools.combinations(range(len(pos)), 2):
        dist[i, j] = min(
            np.linalg.norm(pos[j] - pos[i] + np.dot(np.multiply(t, extent), vectors))
            for t in itertools.product(*shifts)
        )
    shells = sorted({round(d, 6) for d in dist.values()})[:max_order]
    return tuple(
        sorted(
            (i, j, shells.index(round(d, 6)) + 1)
            for (i, j), d in dist.items()
            if round(d, 6) in shells
        )
    ), np.array(pos)


GEOMETRIES = [
    pytest.param(lat.chain, [[1.0]], [[0.0]], (6,), id="chain"),
    pytest.param(lat.square, [[1, 0], [0, 1]], [[0, 0]], (3, 4), id="square"),
    pytest.param(
        lat.triangular, [[1, 0], [0.5, S3 / 2]], [[0, 0]], (3, 4), id="triangular"
    ),
    pytest.param(
        lat.honeycomb,
        [[S3, 0], [S3 / 2, 1.5]],
        [[0, 0], [0, 1]],
        (3, 2),
        id="honeycomb",
    ),
    pytest.param(
        lat.kagome,
        [[2, 0], [1, S3]],
        [[0, 0], [1, 0], [0.5, S3 / 2]],
        (2, 3),
        id="kagome",
    ),
]


@pytest.mark.parametrize(("make", "vectors", "offsets", "extent"), GEOMETRIES)
@pytest.mark.parametrize("pbc", [True, False], ids=["pbc", "obc"])
def test_against_brute_force(make, vectors, offsets, extent, pbc):
    pbc_axes = (pbc,) * len(extent)
    expected, pos = brute_force_edges(vectors, offsets, extent, pbc_axes, 3)
    built = make(extent[0] if make is lat.chain else extent, pbc=pbc)
    assert built.edges == expected
    np.testing.assert_allclose(built.positions, pos, atol=1e-12)
    general = lat.bravais(vectors, offsets, extent, pbc)
    assert general.edges == expected


def test_bravais_mixed_pbc_against_brute_force():
    vectors, offsets = [[1, 0], [0.5, S3 / 2]], [[0, 0]]
    expected, _ = brute_force_edges(vectors, offsets, (4, 3), (False, True), 3)
    assert lat.bravais(vectors, offsets, (4, 3), (False, True)).edges == expected


@pytest.mark.parametrize(
    "pbc", [(True, True), (True, False), (False, True)], ids=["pbc", "x", "y"]
)
def test_skewed_basis_against_brute_force(pbc):
    """A square lattice described by the skewed primitive vectors (1, 0), (5, 1)."""
    vectors, offsets = [[1, 0], [5, 1]], [[0, 0]]
    expected, _ = brute_force_edges(vectors, offsets, (4, 5), pbc, 3, reach=7)
    skewed = lat.bravais(vectors, offsets, (4, 5), pbc)
    assert skewed.edges == expected
    if pbc == (True, True):  # a twisted 4x5 torus: square-lattice shells
        assert counts(skewed) == counts(lat.square((4, 5)))


def test_site_numbering_row_major():
    square = lat.square((3, 4), pbc=False)
    x, y = np.meshgrid(np.arange(3), np.arange(4), indexing="ij")
    np.testing.assert_allclose(square.positions, np.stack([x.ravel(), y.ravel()], 1))
    assert square.n_sites == 12 and square.n_dim == 2


# --- bipartition ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lattice", "is_bipartite"),
    [
        pytest.param(lat.chain(6), True, id="chain-6-pbc"),
        pytest.param(lat.chain(7), False, id="chain-7-pbc"),
        pytest.param(lat.chain(7, pbc=False), True, id="chain-7-obc"),
        pytest.param(lat.square((4, 6)), True, id="square-4x6"),
        pytest.param(lat.square((3, 4)), False, id="square-3x4-pbc"),
        pytest.param(lat.square((3, 5), pbc=False), True, id="square-3x5-obc"),
        pytest.param(lat.honeycomb((3, 3)), True, id="honeycomb"),
        pytest.param(lat.triangular((4, 4)), False, id="triangular"),
        pytest.param(lat.kagome((2, 2)), False, id="kagome"),
        pytest.param(lat.custom(4, [(0, 1), (2, 3)]), True, id="custom-disconnected"),
    ],
)
def test_bipartition(lattice, is_bipartite):
    parts = lattice.bipartition
    assert (parts is not None) == is_bipartite
    if parts is not None:
        assert len(parts) == lattice.n_sites and set(parts) <= {0, 1}
        assert all(parts[i] != parts[j] for i, j in lattice.edges_of_order(1))
        assert parts[0] == 0


# --- custom ---------------------------------------------------------------------------


def test_custom():
    g = lat.custom(4, [(1, 0), [0, 1], (2, 3, 2), (3, 1)], positions=[[0, 0]] * 4)
    assert g.edges == ((0, 1, 1), (1, 3, 1), (2, 3, 2))
    assert g.n_sites == 4 and g.n_dim == 2 and g.name == "custom"
    assert g.edges_of_order(2) == ((2, 3),)
    default = lat.custom(3, [(0, 2)])
    np.testing.assert_allclose(default.positions, [[0.0], [1.0], [2.0]])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        pytest.param(lambda: lat.custom(0, []), "n_sites", id="no-sites"),
        pytest.param(lambda: lat.custom(3, [(0, 3)]), "edges", id="index-too-big"),
        pytest.param(lambda: lat.custom(3, [(-1, 2)]), "edges", id="negative-index"),
        pytest.param(lambda: lat.custom(3, [(1, 1)]), "self edge", id="self-edge"),
        pytest.param(lambda: lat.custom(3, [(0, 1, 0)]), "order", id="order-0"),
        pytest.param(
            lambda: lat.custom(3, [(0, 1, 1), (1, 0, 2)]), "orders", id="clash"
        ),
        pytest.param(lambda: lat.custom(3, [(0,)]), "edges", id="short-edge"),
        pytest.param(
            lambda: lat.custom(3, [], positions=[[0]] * 2), "positions", id="pos"
        ),
    ],
)
def test_custom_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        pytest.param(lambda: lat.square((4,)), "extent", id="extent-length"),
        pytest.param(lambda: lat.square((4, 0)), "extent", id="extent-zero"),
        pytest.param(lambda: lat.square((4, 2.5)), "extent", id="extent-fractional"),
        pytest.param(lambda: lat.chain(0), "length", id="chain-empty"),
        pytest.param(lambda: lat.chain(4, max_order=0), "max_order", id="max-order-0"),
        pytest.param(lambda: lat.square((3, 3), pbc=(True,)), "pbc", id="pbc-length"),
        pytest.param(lambda: lat.square((3, 3), pbc="yes"), "pbc", id="pbc-type"),
        pytest.param(
            lambda: lat.bravais([[1, 0], [2, 0]], [[0, 0]], (2, 2), True),
            "basis_vectors",
            id="dependent-vectors",
        ),
        pytest.param(
            lambda: lat.bravais([[1, 0]], [[0, 0]], (2,), True),
            "basis_vectors",
            id="non-square-vectors",
        ),
        pytest.param(
            lambda: lat.bravais([[1.0]], [[0.0, 0.0]], (2,), True),
            "site_offsets",
            id="offset-dim",
        ),
        pytest.param(
            lambda: lat.bravais([[1.0]], [[0.0], [0.0]], (2,), True),
            "coincide",
            id="coinciding-sites",
        ),
    ],
)
def test_bravais_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_hashable_static_structure():
    assert lat.chain(4) == lat.chain(4) and hash(lat.chain(4)) == hash(lat.chain(4))
    assert lat.chain(4) != lat.chain(4, pbc=False)
    assert lat.square(3) == lat.square((3, 3))
