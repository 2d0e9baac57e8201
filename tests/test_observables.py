"""Observables against dense Kronecker-product matrices."""

import numpy as np
import pytest

from nqs import hilbert, lattice
from nqs.observables import build_observable

# single-site Pauli matrices in the local-index basis (index 0 = down, 1 = up)
PAULI = {
    "x": np.array([[0, 1], [1, 0]], complex),
    "y": np.array([[0, 1j], [-1j, 0]]),
    "z": np.diag([-1.0, 1.0]).astype(complex),
}


def site_op(single, i, n):
    out = np.eye(1)
    for k in range(n):
        out = np.kron(out, single if k == i else np.eye(single.shape[0]))
    return out


def dense(table, hil, lat):
    return build_observable(table, hil, lat).to_dense()


def test_basis_convention_matches_hilbert_states():
    hil = hilbert.Spin(3)
    diag = np.real(np.diag(site_op(PAULI["z"], 1, 3)))
    np.testing.assert_array_equal(diag, hil.all_states()[:, 1])


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_magnetization(axis):
    n = 4
    hil, lat = hilbert.Spin(n), lattice.chain(n)
    expected = sum(site_op(PAULI[axis], i, n) for i in range(n)) / n
    np.testing.assert_allclose(
        dense({"kind": "magnetization", "axis": axis}, hil, lat), expected, atol=1e-12
    )


def test_spin_one_magnetization_is_normalised():
    hil, lat = hilbert.Spin(2, s=1.0), lattice.chain(2, pbc=False)
    sz = np.diag([-1.0, 0.0, 1.0])  # S^z / s for s = 1
    expected = (site_op(sz, 0, 2) + site_op(sz, 1, 2)) / 2
    np.testing.assert_allclose(dense({"kind": "magnetization"}, hil, lat), expected)


def test_staggered_magnetization_and_correlation():
    n = 4
    hil, lat = hilbert.Spin(n), lattice.chain(n)
    z = [site_op(PAULI["z"], i, n) for i in range(n)]
    stag = (z[0] - z[1] + z[2] - z[3]) / n
    np.testing.assert_allclose(
        dense({"kind": "staggered_magnetization"}, hil, lat), stag, atol=1e-12
    )
    x = [site_op(PAULI["x"], i, n) for i in range(n)]
    np.testing.assert_allclose(
        dense({"kind": "correlation", "i": 0, "j": 2, "axis": "x"}, hil, lat),
        x[0] @ x[2],
        atol=1e-12,
    )


def test_structure_factor_is_the_fourier_sum():
    lat = lattice.square([2, 2], pbc=False)
    n = lat.n_sites
    hil = hilbert.Spin(n)
    q = np.array([np.pi, 0.3])
    pos = np.asarray(lat.positions)
    y = [site_op(PAULI["y"], i, n) for i in range(n)]
    expected = (
        sum(
            np.exp(1j * q @ (pos[i] - pos[j])) * y[i] @ y[j]
            for i in range(n)
            for j in range(n)
        )
        / n
    )
    got = dense({"kind": "structure_factor", "q": list(q), "axis": "y"}, hil, lat)
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_custom_terms():
    n = 3
    hil, lat = hilbert.Spin(n), lattice.chain(n)
    m2 = np.arange(16.0).reshape(4, 4)
    table = {
        "kind": "custom",
        "terms": [
            {"sites": [0, 2], "matrix": m2.tolist()},
            {
                "sites": [1],
                "matrix": [[0, 0], [0, 0]],
                "matrix_imag": [[0, 1], [-1, 0]],
            },
        ],
    }
    # term on (0, 2): site 1 sits between, so build it through a permutation
    full = np.kron(m2, np.eye(2)).reshape([2] * 6)  # order (0, 2, 1; 0', 2', 1')
    full = full.transpose(0, 2, 1, 3, 5, 4).reshape(8, 8)
    expected = full + site_op(np.array([[0, 1j], [-1j, 0]]), 1, n)
    np.testing.assert_allclose(dense(table, hil, lat), expected, atol=1e-12)


@pytest.mark.parametrize(
    "table, match",
    [
        ({"kind": "magnetisation"}, "kind"),
        ({"kind": "magnetization", "axis": "w"}, "axis"),
        ({"kind": "magnetization", "axes": "x"}, "'axes'"),
        ({"kind": "correlation", "i": 0, "j": 9}, "not a site"),
        ({"kind": "structure_factor", "q": [1.0, 2.0]}, "components"),
        ({"kind": "custom", "terms": [{"sites": [0], "matrix": [[1.0]]}]}, "shape"),
    ],
    ids=["kind", "axis", "key", "site", "q", "shape"],
)
def test_errors(table, match):
    with pytest.raises(ValueError, match=match):
        build_observable(table, hilbert.Spin(4), lattice.chain(4))


def test_staggered_needs_bipartite_lattice():
    lat = lattice.triangular([3, 3])
    with pytest.raises(ValueError, match="bipartite"):
        build_observable(
            {"kind": "staggered_magnetization"}, hilbert.Spin(lat.n_sites), lat
        )
