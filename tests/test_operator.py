"""LocalOperator against matrices built independently, element by element."""

import itertools

import jax
import numpy as np
import pytest

from nqs import operator as op_mod
from nqs.hilbert import Fock, Spin
from nqs.operator import LocalOperator

SPACES = [
    pytest.param(Spin(4), id="spin-half-4"),
    pytest.param(Spin(4, total_sz=0), id="spin-half-4-sz0"),
    pytest.param(Spin(3, s=1), id="spin-one-3"),
    pytest.param(Spin(3, s=1.5, total_sz=0.5), id="spin-3/2-3-sz"),
    pytest.param(Fock(3, n_max=2), id="fock-3"),
    pytest.param(Fock(4, n_max=2, n_particles=3), id="fock-4-n3"),
]


def local_index(hilbert, values):
    """Local index of site values, from the documented value conventions."""
    values = np.asarray(values, dtype=int)
    if isinstance(hilbert, Spin):
        return (values + round(2 * hilbert.s)) // 2
    return values


def basis_digits(hilbert):
    """(n_states, n_sites) local indices of the basis states."""
    return local_index(hilbert, hilbert.all_states())


def dense_from_terms(hilbert, terms, constant=0.0):
    """<a|O|b> = constant δ_ab + Σ_t M_t[a|sites_t, b|sites_t] δ(a = b off sites_t).

    Sites of a term are taken in the given (unsorted) order, first most significant.
    """
    digits = basis_digits(hilbert)
    d = hilbert.local_size
    n = len(digits)
    out = constant * np.eye(n, dtype=complex)
    for sites, matrix in terms:
        sites = list(sites)
        others = [i for i in range(hilbert.n_sites) if i not in sites]
        weights = d ** np.arange(len(sites) - 1, -1, -1)
        code = digits[:, sites] @ weights
        same = np.all(digits[:, None, others] == digits[None, :, others], axis=-1)
        out += np.where(same, matrix[code[:, None], code[None, :]], 0)
    return out


def random_terms(hilbert, rng, n_terms=5, complex_=True):
    terms = []
    for _ in range(n_terms):
        k = int(rng.integers(1, 4))
        sites = tuple(rng.choice(hilbert.n_sites, size=k, replace=False).tolist())
        size = hilbert.local_size**k
        matrix = rng.normal(size=(size, size))
        if complex_:
            matrix = matrix + 1j * rng.normal(size=(size, size))
        matrix[rng.random((size, size)) < 0.5] = 0  # sparse-ish rows
        terms.append((sites, matrix))
    return terms


def conn_matrix(op, sigma):
    """Rows of the matrix of ``op`` from jitted get_conn, accumulated by index."""
    sigma_p, mels = jax.jit(op.get_conn)(sigma)
    sigma_p, mels = np.asarray(sigma_p), np.asarray(mels)
    idx = op.hilbert.states_to_indices(sigma_p)
    rows = np.zeros((len(sigma), op.hilbert.n_states), dtype=complex)
    for r, c in itertools.product(range(len(sigma)), range(op.n_conn)):
        if idx[r, c] >= 0:
            rows[r, idx[r, c]] += mels[r, c]
        else:  # only a constrained basis can be left
            assert op.hilbert.constraint_sum is not None
    return rows, sigma_p, mels


@pytest.mark.parametrize("hilbert", SPACES)
def test_random_operator_matches_elementwise_matrix(hilbert):
    rng = np.random.default_rng(1)
    terms = random_terms(hilbert, rng)
    op = LocalOperator(hilbert, tuple(terms), 0.7)
    expected = dense_from_terms(hilbert, terms, 0.7)
    np.testing.assert_allclose(op.to_dense(), expected, atol=1e-12)


@pytest.mark.parametrize("hilbert", SPACES)
def test_get_conn_rows_match_sparse_matrix(hilbert):
    rng = np.random.default_rng(2)
    op = LocalOperator(hilbert, tuple(random_terms(hilbert, rng)), -0.3)
    states = hilbert.all_states()
    rows, sigma_p, mels = conn_matrix(op, states)
    np.testing.assert_allclose(rows, op.to_sparse().toarray(), atol=1e-12)
    # slot 0 is the configuration itself with the diagonal element
    np.testing.assert_array_equal(sigma_p[:, 0], states)
    np.testing.assert_allclose(mels[:, 0], np.diagonal(op.to_dense()), atol=1e-12)
    # padding slots (zero element) keep the configuration unchanged
    pad = mels == 0
    pad[:, 0] = False
    assert np.all(sigma_p[pad] == np.broadcast_to(states[:, None], sigma_p.shape)[pad])
    assert sigma_p.dtype == np.int8


def test_get_conn_batch_axes_and_dtype():
    hilbert = Spin(3)
    op = op_mod.sigma_x(hilbert, 0) + op_mod.sigma_y(hilbert, 1)
    assert op.dtype == np.complex128
    sigma = hilbert.all_states().reshape(2, 4, 3)
    sigma_p, mels = op.get_conn(sigma)
    assert sigma_p.shape == (2, 4, op.n_conn, 3) and mels.shape == (2, 4, op.n_conn)
    flat_p, flat_mels = op.get_conn(sigma.reshape(8, 3))
    np.testing.assert_array_equal(sigma_p.reshape(8, op.n_conn, 3), flat_p)
    np.testing.assert_allclose(mels.reshape(8, op.n_conn), flat_mels)
    assert (op_mod.sigma_x(hilbert, 0) * 2.0).dtype == np.float64


PAULI = {
    "x": np.array([[0, 1], [1, 0]], dtype=complex),
    "y": np.array([[0, -1j], [1j, 0]]),
    "z": np.diag([1.0, -1.0]).astype(complex),
}


def textbook(n, site, matrix):
    """Kronecker product in the (up, down) basis, site 0 leftmost."""
    out = np.eye(1)
    for i in range(n):
        out = np.kron(out, matrix if i == site else np.eye(len(matrix)))
    return out


def to_value_basis(n, matrix):
    """Reorder a textbook (up first) matrix to ascending values (down first)."""
    order = [
        int("".join("0" if b == "1" else "1" for b in format(i, f"0{n}b")), 2)
        for i in range(2**n)
    ]
    return matrix[np.ix_(order, order)]


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_pauli_matrices_follow_the_up_is_plus_one_convention(axis):
    hilbert = Spin(3)
    op = getattr(op_mod, f"sigma_{axis}")(hilbert, 1)
    expected = to_value_basis(3, textbook(3, 1, PAULI[axis]))
    np.testing.assert_allclose(op.to_dense(), expected, atol=1e-14)
    spin = getattr(op_mod, f"spin_{axis}")(hilbert, 1)
    np.testing.assert_allclose(spin.to_dense(), expected / 2, atol=1e-14)


def test_sigma_z_of_up_configuration_is_plus_one():
    hilbert = Spin(2)
    _, mels = op_mod.sigma_z(hilbert, 0).get_conn(np.array([1, -1], dtype=np.int8))
    assert mels[0] == 1.0


@pytest.mark.parametrize("s", [0.5, 1.0, 1.5])
def test_spin_commutation_and_casimir(s):
    hilbert = Spin(2, s=s)
    sx, sy, sz = (getattr(op_mod, f"spin_{a}")(hilbert, 0) for a in "xyz")
    comm = (sx @ sy - sy @ sx).to_dense()
    np.testing.assert_allclose(comm, 1j * sz.to_dense(), atol=1e-12)
    comm = (sy * sz - sz * sy).to_dense()
    np.testing.assert_allclose(comm, 1j * sx.to_dense(), atol=1e-12)
    casimir = (sx @ sx + sy @ sy + sz @ sz).to_dense()
    np.testing.assert_allclose(casimir, s * (s + 1) * np.eye(len(casimir)), atol=1e-12)
    plus = op_mod.spin_plus(hilbert, 1)
    np.testing.assert_allclose(
        plus.to_dense(),
        (op_mod.spin_x(hilbert, 1) + 1j * op_mod.spin_y(hilbert, 1)).to_dense(),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        op_mod.spin_minus(hilbert, 1).to_dense(), plus.to_dense().T, atol=1e-12
    )
    # S^z eigenvalues in ascending local order: -s..s
    diag = np.diagonal(op_mod.spin_z(Spin(1, s=s), 0).to_dense()).real
    np.testing.assert_allclose(diag, np.arange(-s, s + 1))


def test_boson_operators():
    n_max = 4
    hilbert = Fock(2, n_max=n_max)
    b, bd = op_mod.destroy(hilbert, 1), op_mod.create(hilbert, 1)
    comm = (b @ bd - bd @ b).to_dense()
    occupation = hilbert.all_states()[:, 1]
    below = occupation < n_max
    np.testing.assert_allclose(comm[np.ix_(below, below)], np.eye(below.sum()))
    np.testing.assert_allclose(
        (bd @ b).to_dense(), op_mod.number(hilbert, 1).to_dense()
    )
    single = op_mod.destroy(Fock(1, n_max=n_max), 0).to_dense()
    for n in range(1, n_max + 1):  # b|n> = sqrt(n)|n-1>
        assert single[n - 1, n] == pytest.approx(np.sqrt(n))
    assert np.count_nonzero(single) == n_max


def test_algebra_matches_dense_algebra():
    hilbert = Spin(3, s=1)
    rng = np.random.default_rng(3)
    a = LocalOperator(hilbert, tuple(random_terms(hilbert, rng, 3)), 0.2)
    b = LocalOperator(hilbert, tuple(random_terms(hilbert, rng, 3)), -1.1j)
    da, db = a.to_dense(), b.to_dense()
    eye = np.eye(len(da))
    cases = [
        (a + b, da + db),
        (a - b, da - db),
        (-a, -da),
        (2.5 * a, 2.5 * da),
        (a * 1j, 1j * da),
        (a / 4, da / 4),
        (a + 3.0, da + 3.0 * eye),
        (1.0 - a, eye - da),
        (a @ b, da @ db),
        (a * b, da @ db),
        (b @ a @ b, db @ da @ db),
        (a.H, da.conj().T),
    ]
    for got, expected in cases:
        np.testing.assert_allclose(got.to_dense(), expected, atol=1e-11)
    assert (a + a.H).is_hermitian() and not a.is_hermitian()


def test_normalisation_merges_and_drops_terms():
    hilbert = Spin(4)
    x0, x1 = op_mod.sigma_x(hilbert, 0), op_mod.sigma_x(hilbert, 1)
    zz = op_mod.sigma_z(hilbert, 0) @ op_mod.sigma_z(hilbert, 1)
    assert not (x0 - x0).terms and (x0 - x0).n_conn == 1
    merged = zz + x0 + x1 + op_mod.sigma_z(hilbert, 0)
    assert [s for s, _ in merged.terms] == [(0, 1)]  # subsets folded in
    assert merged.n_conn == 3  # diagonal + one flip per site
    # reversed site order is permuted, not misread
    swapped = op_mod.local_operator(hilbert, (1, 0), np.kron(PAULI["x"], np.eye(2)))
    np.testing.assert_allclose(swapped.to_dense(), x1.to_dense())
    # a 4-site ring of S.S bonds: one connection per bond plus the diagonal
    bond = np.kron(PAULI["x"], PAULI["x"]) + np.kron(PAULI["y"], PAULI["y"])
    ring = LocalOperator(hilbert, tuple(((i, (i + 1) % 4), bond) for i in range(4)))
    assert ring.n_conn == 5 and ring.dtype == np.float64


def test_validation_errors():
    hilbert = Spin(3)
    with pytest.raises(ValueError, match="out of range"):
        op_mod.sigma_x(hilbert, 3)
    with pytest.raises(ValueError, match="distinct"):
        op_mod.local_operator(hilbert, (0, 0), np.eye(4))
    with pytest.raises(ValueError, match=r"\(4, 4\) matrix"):
        op_mod.local_operator(hilbert, (0, 1), np.eye(2))
    with pytest.raises(ValueError, match="different Hilbert spaces"):
        op_mod.sigma_x(hilbert, 0) + op_mod.sigma_x(Spin(4), 0)
    with pytest.raises(ValueError, match="spin 1/2"):
        op_mod.sigma_z(Spin(2, s=1), 0)
    with pytest.raises(ValueError, match="Fock"):
        op_mod.destroy(hilbert, 0)
    with pytest.raises(ValueError, match="Spin"):
        op_mod.spin_x(Fock(2, n_max=2), 0)
    identity = op_mod.identity(hilbert).to_dense()
    np.testing.assert_allclose(identity, np.eye(8))


def test_operator_is_a_static_jit_argument_traced_once():
    hilbert = Spin(4)
    op = op_mod.sigma_x(hilbert, 0) @ op_mod.sigma_x(hilbert, 1)
    traces = []

    @jax.jit
    def apply(sigma):
        traces.append(None)
        return op.get_conn(sigma)

    def conn(operator, sigma):
        traces.append(None)
        return operator.get_conn(sigma)

    static = jax.jit(conn, static_argnums=0)
    states = hilbert.all_states()
    for _ in range(2):
        apply(states)
        sigma_p, mels = static(op, states)
    assert len(traces) == 2  # one trace each, none on the second call
    assert hash(op) != hash(op_mod.sigma_x(hilbert, 0) @ op_mod.sigma_x(hilbert, 1))
    np.testing.assert_array_equal(sigma_p[:, 1], states * np.array([-1, -1, 1, 1]))
    np.testing.assert_allclose(mels[:, 1], 1.0)
