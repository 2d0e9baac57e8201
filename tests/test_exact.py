"""Exact diagonalisation and dynamics against numpy/scipy dense linear algebra."""

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse

from nqs import exact
from nqs import operator as op_mod
from nqs.hilbert import Fock, Spin
from nqs.operator import LocalOperator

X = np.array([[0.0, 1.0], [1.0, 0.0]])
Y = np.array([[0.0, -1j], [1j, 0.0]])
Z = np.diag([1.0, -1.0])


def kron_chain(n, factors):
    """Kronecker product over n sites in the textbook (up first) basis."""
    out = np.eye(1)
    for i in range(n):
        out = np.kron(out, factors.get(i, np.eye(2)))
    return out


def ring_heisenberg_dense(n, J=1.0):
    """J Σ_i S_i·S_{i+1} on a ring, S = σ/2, from 2x2 Paulis."""
    h = np.zeros((2**n, 2**n), dtype=complex)
    for i in range(n):
        j = (i + 1) % n
        for p in (X, Y, Z):
            h += J / 4 * kron_chain(n, {i: p, j: p})
    return h.real


def ring_heisenberg(hilbert, J=1.0):
    n = hilbert.n_sites
    terms = []
    for i in range(n):
        j = (i + 1) % n
        bond = sum(
            getattr(op_mod, f"spin_{a}")(hilbert, i)
            @ getattr(op_mod, f"spin_{a}")(hilbert, j)
            for a in "xyz"
        )
        terms.append(J * bond)
    return sum(terms[1:], terms[0])


def test_sparse_matrix_sums_duplicate_connections():
    hilbert = Spin(3)
    # X0 Z1 and X0 Z2 both flip only site 0: the two entries must be summed
    xz1 = op_mod.sigma_x(hilbert, 0) @ op_mod.sigma_z(hilbert, 1)
    xz2 = op_mod.sigma_x(hilbert, 0) @ op_mod.sigma_z(hilbert, 2)
    expected = kron_chain(3, {0: X, 1: Z}) + kron_chain(3, {0: X, 2: Z})
    order = np.arange(8)[::-1]  # textbook (up first) -> ascending values (down first)
    got = (xz1 + xz2).to_sparse()
    np.testing.assert_allclose(got.toarray(), expected[np.ix_(order, order)])
    assert got.nnz == np.count_nonzero(expected)  # cancellations removed


@pytest.mark.parametrize("n", [4, 10], ids=["dense-4", "lanczos-10"])
def test_ground_state_matches_eigh(n):
    hilbert = Spin(n)
    ham = ring_heisenberg(hilbert)
    reference = np.linalg.eigvalsh(ring_heisenberg_dense(n))
    energies, vectors = exact.ground_state(ham, k=1)
    assert energies.shape == (1,) and vectors.shape == (2**n, 1)
    assert energies[0] == pytest.approx(reference[0], abs=1e-10)
    matrix = ham.to_sparse()
    residual = matrix @ vectors[:, 0] - energies[0] * vectors[:, 0]
    assert np.linalg.norm(residual) < 1e-7
    assert np.linalg.norm(vectors[:, 0]) == pytest.approx(1.0)


def test_four_site_ring_energy_is_minus_two_j():
    energies, _ = exact.ground_state(ring_heisenberg(Spin(4), J=1.5))
    assert energies[0] == pytest.approx(-2 * 1.5, abs=1e-12)


def test_several_states_with_degeneracy():
    # 8-site ring: singlet ground state, then a threefold degenerate triplet
    n = 8
    ham = ring_heisenberg(Spin(n))
    reference = np.linalg.eigvalsh(ring_heisenberg_dense(n))
    energies, vectors = exact.ground_state(ham, k=4)
    np.testing.assert_allclose(energies, reference[:4], atol=1e-9)
    assert reference[1] == pytest.approx(reference[3])  # the degeneracy is real
    np.testing.assert_allclose(vectors.conj().T @ vectors, np.eye(4), atol=1e-8)
    matrix = ham.to_sparse()
    assert np.linalg.norm(matrix @ vectors - vectors * energies) < 1e-6


def test_complex_hermitian_ground_state():
    hilbert = Spin(8, total_sz=0)  # 70 states: dense path; 256 below: Lanczos
    rng = np.random.default_rng(5)
    for space in (hilbert, Spin(8)):
        terms = []
        for i in range(8):
            m = rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4))
            terms.append(((i, (i + 3) % 8), m + m.conj().T))
        ham = LocalOperator(space, tuple(terms))
        assert ham.dtype == np.complex128 and ham.is_hermitian()
        dense = ham.to_dense()
        reference = np.linalg.eigvalsh(dense)
        energies, vectors = exact.ground_state(ham, k=2)
        np.testing.assert_allclose(energies, reference[:2], atol=1e-9)
        e0 = exact.expectation(ham, vectors[:, 0])
        assert e0 == pytest.approx(reference[0], abs=1e-9)


def test_expectation_normalises():
    hilbert = Spin(3)
    op = op_mod.sigma_x(hilbert, 0) + 0.5 * op_mod.sigma_z(hilbert, 2)
    psi = np.random.default_rng(0).normal(size=8) + 1j
    dense = op.to_dense()
    expected = np.vdot(psi, dense @ psi) / np.vdot(psi, psi)
    assert exact.expectation(op, 3.0 * psi) == pytest.approx(expected)


def test_evolve_matches_expm():
    hilbert = Spin(5)
    ham = ring_heisenberg(hilbert) + 0.7 * op_mod.sigma_x(hilbert, 2)
    dense = ham.to_dense()
    psi0 = np.zeros(32, dtype=complex)
    psi0[5] = 1.0
    times = np.array([0.0, 0.3, 0.3, 1.7])
    states = exact.evolve(ham, psi0, times)
    assert states.shape == (4, 32) and states.dtype == np.complex128
    for t, state in zip(times, states, strict=True):
        np.testing.assert_allclose(
            state, scipy.linalg.expm(-1j * t * dense) @ psi0, atol=1e-10
        )
    with pytest.raises(ValueError, match="ascending"):
        exact.evolve(ham, psi0, [1.0, 0.5])


def test_size_guard_reports_memory():
    hilbert = Spin(30, total_sz=0)
    ham = ring_heisenberg(hilbert)
    estimate = exact.estimate_memory(hilbert, ham)
    # at least the CSR entries (8-byte value + 4-byte index) of the diagonal
    assert estimate > hilbert.n_states * 12
    with pytest.raises(ValueError, match=r"too large.*155117520 states.*GB"):
        exact.ground_state(ham)
    with pytest.raises(ValueError, match="k must be"):
        exact.ground_state(ring_heisenberg(Spin(3)), k=9)


@pytest.mark.parametrize(
    "hilbert",
    [Spin(14, total_sz=1), Spin(9, s=1, total_sz=0), Spin(13), Fock(8, 3, 5)],
    ids=["spin-14-sz1", "spin1-9", "spin-13", "fock-8-n5"],
)
def test_sparse_rows_with_several_ranking_blocks(hilbert):
    """Large enough for several ranking blocks: rows from get_conn and the
    Hilbert space's own ranking agree with the block-ranked sparse matrix."""
    n = hilbert.n_sites
    hop = op_mod.spin_plus if isinstance(hilbert, Spin) else op_mod.create
    down = op_mod.spin_minus if isinstance(hilbert, Spin) else op_mod.destroy
    diag = op_mod.spin_z if isinstance(hilbert, Spin) else op_mod.number
    ham = diag(hilbert, 0) @ diag(hilbert, n - 1)
    for i, j, c in [(0, n - 1, 0.7), (2, n // 2 + 1, -1.3), (n - 3, 1, 0.4)]:
        pair = hop(hilbert, i) @ down(hilbert, j)
        ham = ham + c * (pair + pair.H) + 0.3 * diag(hilbert, j)
    states = hilbert.all_states()
    sigma_p, mels = ham.get_conn(states)
    cols = hilbert.states_to_indices(np.asarray(sigma_p))
    keep = cols >= 0
    row_idx = np.broadcast_to(np.arange(len(states))[:, None], cols.shape)
    size = (len(states), len(states))
    entries = (np.asarray(mels)[keep], (row_idx[keep], cols[keep]))
    rows = scipy.sparse.coo_matrix(entries, shape=size).tocsr()
    assert abs(ham.to_sparse() - rows).max() < 1e-12
    assert ham.to_sparse().nnz > len(states)  # off-diagonal entries are present


def test_sixteen_site_chain_literature_energy():
    """Periodic S=1/2 Heisenberg chain, L = 16: E0 = -7.1422963606 (Lanczos)."""
    n = 16
    energies, _ = exact.ground_state(ring_heisenberg(Spin(n, total_sz=0)))
    assert energies[0] == pytest.approx(-7.1422963606, abs=1e-9)


def test_many_states_use_eigsh():
    n = 9
    ham = ring_heisenberg(Spin(n)) + 0.2 * op_mod.sigma_x(Spin(n), 0)
    reference = np.linalg.eigvalsh(ham.to_dense())
    energies, vectors = exact.ground_state(ham, k=10)
    np.testing.assert_allclose(energies, reference[:10], atol=1e-9)
    assert np.linalg.norm(ham.to_sparse() @ vectors - vectors * energies) < 1e-6
