"""Built-in Hamiltonians against matrices built independently from Kronecker products.

The reference matrices use the textbook basis (m = s, s-1, ..., -s per site, i.e. spin
up first; occupations 0..n_max for bosons), sum explicitly over the lattice's edges, and
are then restricted to the Hilbert space's basis states.
"""

import jax
import numpy as np
import pytest
import scipy.sparse as sparse

from nqs import exact, hamiltonian, lattice
from nqs.hilbert import Fock, Spin


# -- independent reference matrices ----------------------------------------------------
def textbook_spin(s):
    """(Sx, Sy, Sz) in the basis m = s, s-1, ..., -s."""
    m = s - np.arange(round(2 * s) + 1)
    plus = np.zeros((len(m), len(m)))
    for j in range(1, len(m)):  # S+|m> = sqrt(s(s+1) - m(m+1)) |m+1>
        plus[j - 1, j] = np.sqrt(s * (s + 1) - m[j] * (m[j] + 1))
    minus = plus.T
    return (plus + minus) / 2, (plus - minus) / 2j, np.diag(m)


PAULI_X = np.array([[0.0, 1.0], [1.0, 0.0]])
PAULI_Z = np.diag([1.0, -1.0])


def on_sites(n, d, factors):
    """Sparse Kronecker product of ``factors`` ({site: matrix}) and identities."""
    out = sparse.identity(1, format="csr")
    for i in range(n):
        out = sparse.kron(out, sparse.csr_matrix(factors.get(i, np.eye(d))), "csr")
    return out


def spin_bonds(n, s, bonds, delta=1.0):
    """Σ_(i,j,J) J (Sx Sx + Sy Sy + Δ Sz Sz)."""
    sx, sy, sz = textbook_spin(s)
    d = len(sz)
    out = sparse.csr_matrix((d**n, d**n), dtype=complex)
    for i, j, coupling in bonds:
        for op, weight in ((sx, 1.0), (sy, 1.0), (sz, delta)):
            out = out + coupling * weight * on_sites(n, d, {i: op, j: op})
    return out


def reference(model, lat, hilbert, params):
    """Reference matrix of ``model`` restricted to the basis of ``hilbert``."""
    n, edges = lat.n_sites, lat.edges_of_order(1)
    if model == "ising":
        J, h = params["J"], params["h"]  # noqa: N806
        full = sum(-J * on_sites(n, 2, {i: PAULI_Z, j: PAULI_Z}) for i, j in edges)
        full = full + sum(-h * on_sites(n, 2, {i: PAULI_X}) for i in range(n))
    elif model == "heisenberg":
        full = spin_bonds(n, hilbert.s, [(i, j, params["J"]) for i, j in edges])
    elif model == "xxz":
        bonds = [(i, j, params["J"]) for i, j in edges]
        full = spin_bonds(n, hilbert.s, bonds, params["delta"])
    elif model == "j1j2":
        bonds = [(i, j, params["J1"]) for i, j in edges]
        bonds += [(i, j, params["J2"]) for i, j in lat.edges_of_order(2)]
        full = spin_bonds(n, hilbert.s, bonds)
    else:
        t, U, mu = params["t"], params["U"], params["mu"]  # noqa: N806
        d = hilbert.n_max + 1
        b = np.diag(np.sqrt(np.arange(1.0, d)), 1)
        num = np.diag(np.arange(float(d)))
        full = sparse.csr_matrix((d**n, d**n))
        for i, j in edges:
            full = full - t * on_sites(n, d, {i: b.T, j: b})
            full = full - t * on_sites(n, d, {i: b, j: b.T})
        for i in range(n):
            full = full + on_sites(
                n, d, {i: U / 2 * num @ (num - np.eye(d)) - mu * num}
            )
    index = textbook_index(hilbert)
    return full.toarray()[np.ix_(index, index)]


def textbook_index(hilbert):
    """Position of each basis state of ``hilbert`` in the textbook product basis."""
    values = hilbert.all_states().astype(int)
    if isinstance(hilbert, Spin):
        two_s = round(2 * hilbert.s)
        digits = (two_s - values) // 2  # entry 2m -> s - m
    else:
        digits = values
    d = hilbert.local_size
    return digits @ (d ** np.arange(hilbert.n_sites - 1, -1, -1))


# -- cases -----------------------------------------------------------------------------
LATTICES = {
    "chain6": lambda: lattice.chain(6),
    "chain5-obc": lambda: lattice.chain(5, pbc=False),
    "square2x2": lambda: lattice.square((2, 2)),
    "square3x2": lambda: lattice.square((3, 2)),
    "triangular2x2": lambda: lattice.triangular((2, 2)),
    "triangular3x2": lambda: lattice.triangular((3, 2)),
    "honeycomb2x1": lambda: lattice.honeycomb((2, 1)),
    "honeycomb2x2": lambda: lattice.honeycomb((2, 2)),
    "kagome2x1": lambda: lattice.kagome((2, 1)),
}
SMALL = ["chain5-obc", "square3x2", "kagome2x1"]

ISING_ALL = ["chain6", "chain5-obc", "square2x2", "square3x2", "triangular3x2"]
ISING_ALL += ["honeycomb2x1", "kagome2x1"]
CASES = []
for name in LATTICES:
    CASES.append(("heisenberg", name, ("spin", 0.5, "low"), {"J": 1.0}))
for name in ISING_ALL:
    CASES.append(("ising", name, ("spin", 0.5, None), {"J": 1.3, "h": 0.7}))
for name in SMALL:
    CASES.append(("ising", name, ("spin", 0.5, "low"), {"J": -0.8, "h": 1.1}))
    CASES.append(("heisenberg", name, ("spin", 1.0, None), {"J": 0.9}))
    CASES.append(("xxz", name, ("spin", 0.5, None), {"J": 0.7, "delta": 0.3}))
    CASES.append(("j1j2", name, ("spin", 0.5, "low"), {"J1": 1.0, "J2": 0.45}))
BH_FREE, BH_FIXED = {"t": 0.6, "U": 2.5, "mu": 0.4}, {"t": 1.0, "U": 1.5, "mu": -0.2}
CASES += [
    ("bose_hubbard", "chain5-obc", ("fock", 2, None), BH_FREE),
    ("bose_hubbard", "square3x2", ("fock", 2, None), BH_FREE),
    ("bose_hubbard", "chain5-obc", ("fock", 3, 3), BH_FIXED),
    ("bose_hubbard", "kagome2x1", ("fock", 3, 3), BH_FIXED),
    ("xxz", "chain5-obc", ("spin", 1.5, "low"), {"J": 1.2, "delta": -0.6}),
]


def make_hilbert(spec, n_sites):
    kind, size, constraint = spec
    if kind == "fock":
        return Fock(n_sites, n_max=size, n_particles=constraint)
    if constraint == "low":  # the sector of smallest |total_sz|
        constraint = 0.5 if (n_sites * size) % 1 else 0.0
    return Spin(n_sites, s=size, total_sz=constraint)


def case_id(case):
    model, name, (kind, size, constraint), _ = case
    return f"{model}-{name}-{kind}{size}-{constraint}"


def expected_n_conn(model, lat, hilbert):
    """1 + Σ_terms (max off-diagonal entries per row of the bond matrix)."""
    n_bonds = len(lat.edges_of_order(1))
    if model == "ising":
        return lat.n_sites + 1  # one flip per site; Z Z is diagonal
    if model == "bose_hubbard":
        return 2 * n_bonds + 1  # hop either way (n_max >= 2)
    if model == "j1j2":
        n_bonds += len(lat.edges_of_order(2))
    # S+S- + S-S+: one exchange per bond for s = 1/2, two from m_i = m_j for s >= 1
    return (1 if hilbert.s == 0.5 else 2) * n_bonds + 1


def assert_get_conn_matches(ham, model, matrix):
    """Accumulate jitted get_conn elements by connected index; compare with the CSR."""
    hilbert = ham.hilbert
    states = hilbert.all_states()
    sigma_p, mels = jax.jit(ham.get_conn)(states)
    sigma_p, mels = np.asarray(sigma_p), np.asarray(mels)
    assert sigma_p.shape == (len(states), ham.n_conn, hilbert.n_sites)
    idx = hilbert.states_to_indices(sigma_p)
    outside = (idx < 0) & (mels != 0)
    assert model == "ising" or not outside.any()  # only ising leaves an Sz sector
    rows = np.zeros(matrix.shape)
    row_idx = np.broadcast_to(np.arange(len(states))[:, None], idx.shape)
    inside = idx >= 0
    np.add.at(rows, (row_idx[inside], idx[inside]), mels[inside])
    np.testing.assert_allclose(rows, matrix, atol=1e-13)
    pad = mels == 0
    same = np.all(sigma_p == states[:, None, :], axis=-1)
    assert np.all(same[pad]) and np.all(same[:, 0])


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_matches_kronecker_reference(case):
    model, name, spec, params = case
    lat = LATTICES[name]()
    hilbert = make_hilbert(spec, lat.n_sites)
    ham = getattr(hamiltonian, model)(hilbert, lat, **params)
    assert ham.dtype == np.float64
    assert ham.n_conn == expected_n_conn(model, lat, hilbert)
    matrix = ham.to_dense()
    np.testing.assert_allclose(
        matrix, reference(model, lat, hilbert, params), atol=1e-12
    )
    assert_get_conn_matches(ham, model, matrix)


# -- closed forms ----------------------------------------------------------------------
@pytest.mark.parametrize("length", [6, 8])
@pytest.mark.parametrize("h", [0.4, 1.0, 2.5])
def test_periodic_tfim_chain_free_fermions(length, h):
    """E0 = -Σ_k sqrt(J² + h² - 2 J h cos k), k = π(2n+1)/L (even parity sector)."""
    J = 1.0  # noqa: N806
    lat = lattice.chain(length)
    energies, _ = exact.ground_state(hamiltonian.ising(Spin(length), lat, J, h))
    k = np.pi * (2 * np.arange(length) + 1) / length
    e0 = -np.sum(np.sqrt(J**2 + h**2 - 2 * J * h * np.cos(k)))
    assert energies[0] == pytest.approx(e0, abs=1e-10)


def test_heisenberg_four_site_ring_spectrum():
    """H = J/2 (S² - S_A² - S_B²): E = -2J (1), -J (3), 0 (7), +J (5)."""
    J = 0.8  # noqa: N806
    ham = hamiltonian.heisenberg(Spin(4), lattice.chain(4), J)
    expected = np.repeat([-2 * J, -J, 0.0, J], [1, 3, 7, 5])
    np.testing.assert_allclose(np.linalg.eigvalsh(ham.to_dense()), expected, atol=1e-12)
    sector = hamiltonian.heisenberg(Spin(4, total_sz=0), lattice.chain(4), J)
    assert exact.ground_state(sector)[0][0] == pytest.approx(-2 * J, abs=1e-12)


def test_single_bond_singlet_and_triplet():
    J = 1.7  # noqa: N806
    ham = hamiltonian.heisenberg(Spin(2), lattice.chain(2, pbc=False), J)
    expected = [-3 * J / 4, J / 4, J / 4, J / 4]
    np.testing.assert_allclose(np.linalg.eigvalsh(ham.to_dense()), expected, atol=1e-12)


def test_two_site_bose_hubbard_two_particles():
    """Basis |20>, |11>, |02>: E = U - 2μ and U/2 ± sqrt(U²/4 + 4t²) - 2μ."""
    t, U, mu = 0.7, 3.0, 0.25  # noqa: N806
    lat = lattice.chain(2, pbc=False)
    root = np.sqrt(U**2 / 4 + 4 * t**2)
    expected = np.sort([U / 2 - root, U / 2 + root, U]) - 2 * mu
    ham = hamiltonian.bose_hubbard(Fock(2, n_max=2, n_particles=2), lat, t, U, mu)
    np.testing.assert_allclose(np.linalg.eigvalsh(ham.to_dense()), expected, atol=1e-12)
    full = hamiltonian.bose_hubbard(Fock(2, n_max=4), lat, t, U, mu).to_dense()
    two = Fock(2, n_max=4).all_states().sum(axis=1) == 2
    block = full[np.ix_(two, two)]
    np.testing.assert_allclose(np.linalg.eigvalsh(block), expected, atol=1e-12)


# -- Marshall sign rule ----------------------------------------------------------------
MARSHALL = [
    ("chain6", 0.5),
    ("chain5-obc", 1.0),
    ("square2x2", 0.5),
    ("honeycomb2x2", 0.5),
]


@pytest.mark.parametrize("name,s", MARSHALL, ids=[f"{n}-s{s}" for n, s in MARSHALL])
def test_marshall_rotation(name, s):
    lat = LATTICES[name]()
    hilbert = Spin(lat.n_sites, s=s)
    plain = hamiltonian.heisenberg(hilbert, lat, 1.0).to_dense()
    rotated = hamiltonian.heisenberg(hilbert, lat, 1.0, sign_rule="marshall").to_dense()
    np.testing.assert_allclose(
        np.linalg.eigvalsh(rotated), np.linalg.eigvalsh(plain), atol=1e-10
    )
    off = rotated - np.diag(np.diagonal(rotated))
    assert off.max() <= 1e-14 and off.min() < 0
    # the rotation is U H U with U = Π_{i in A} (-1)^(s - m_i)
    m = hilbert.all_states() / 2
    in_a = np.array(lat.bipartition) == 0
    u = np.prod(np.where(in_a, (-1.0) ** np.round(s - m), 1.0), axis=1)
    np.testing.assert_allclose(rotated, u[:, None] * plain * u[None, :], atol=1e-13)


def test_marshall_xxz_keeps_spectrum_and_makes_off_diagonals_negative():
    lat = LATTICES["chain6"]()
    hilbert = Spin(lat.n_sites, total_sz=0)
    plain = hamiltonian.xxz(hilbert, lat, 1.0, 1.5).to_dense()
    rotated = hamiltonian.xxz(hilbert, lat, 1.0, 1.5, sign_rule="marshall").to_dense()
    np.testing.assert_allclose(
        np.linalg.eigvalsh(rotated), np.linalg.eigvalsh(plain), atol=1e-10
    )
    off = rotated - np.diag(np.diagonal(rotated))
    assert off.max() <= 1e-14 and off.min() < 0
    assert plain.max() > 0 and (plain - np.diag(np.diagonal(plain))).max() > 0


def test_marshall_j1j2_keeps_spectrum():
    lat = lattice.square((4, 2))
    hilbert = Spin(8, total_sz=0)
    plain = hamiltonian.j1j2(hilbert, lat, 1.0, 0.5).to_dense()
    rotated = hamiltonian.j1j2(hilbert, lat, 1.0, 0.5, sign_rule="marshall").to_dense()
    np.testing.assert_allclose(
        np.linalg.eigvalsh(rotated), np.linalg.eigvalsh(plain), atol=1e-10
    )
    assert not np.allclose(rotated, plain)


# -- errors ----------------------------------------------------------------------------
def test_errors():
    chain = lattice.chain(4)
    with pytest.raises(ValueError, match="spin 1/2"):
        hamiltonian.ising(Spin(4, s=1), chain, 1.0, 1.0)
    with pytest.raises(ValueError, match="Fock"):
        hamiltonian.bose_hubbard(Spin(4), chain, 1.0, 1.0, 0.0)
    for model, args in (("heisenberg", (1.0,)), ("xxz", (1.0, 0.5))):
        with pytest.raises(ValueError, match="spin Hilbert space"):
            getattr(hamiltonian, model)(Fock(4, n_max=2), chain, *args)
    with pytest.raises(ValueError, match="bipartite"):
        hamiltonian.heisenberg(Spin(4), lattice.triangular((2, 2)), 1.0, "marshall")
    with pytest.raises(ValueError, match="bipartite"):
        hamiltonian.j1j2(Spin(5), lattice.chain(5), 1.0, 0.2, sign_rule="marshall")
    with pytest.raises(ValueError, match="unknown sign_rule"):
        hamiltonian.heisenberg(Spin(4), chain, 1.0, sign_rule="marshal")
    with pytest.raises(ValueError, match="lattice has 4 sites.*Hilbert space has 5"):
        hamiltonian.heisenberg(Spin(5), chain, 1.0)
    with pytest.raises(ValueError, match="lattice has 4 sites"):
        hamiltonian.ising(Spin(6), chain, 1.0, 1.0)
