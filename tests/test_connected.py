"""Local estimates that evaluate the model only on the connected configurations they
need (nqs.connected), against dense matrices built here and a plain evaluation."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nqs import connected, lattice, vstate
from nqs.hamiltonian import ising, j1j2
from nqs.hilbert import Spin

N = 8
PAULI = {
    "x": np.array([[0, 1], [1, 0]], dtype=complex),
    "y": np.array([[0, -1j], [1j, 0]]),
    "z": np.diag([-1.0, 1.0]).astype(complex),
}


class PhaseRBM(nn.Module):
    """Real parameters, complex log ψ (amplitude and phase networks)."""

    @nn.compact
    def __call__(self, sigma):
        x = sigma.astype(jnp.float64)
        init = nn.initializers.normal(0.4)
        amp = nn.Dense(2 * N, param_dtype=jnp.float64, kernel_init=init)(x)
        phase = nn.Dense(N, param_dtype=jnp.float64, kernel_init=init)(x)
        return jnp.sum(jnp.log(jnp.cosh(amp)), -1) + 1j * jnp.sum(jnp.tanh(phase), -1)


def _kron(factors: dict) -> np.ndarray:
    out = np.ones((1, 1), dtype=complex)
    for i in range(N):
        out = np.kron(out, factors.get(i, np.eye(2)))
    return out


@functools.cache
def _j1j2_dense(j2: float) -> tuple:
    """The J1–J2 chain of N sites, its dense matrix from Pauli products (S = σ/2) in
    the full basis (site 0 most significant, +1 = up = index 1), and the space."""
    lat = lattice.chain(N, pbc=True)
    hilbert = Spin(N)
    op = j1j2(hilbert, lat, 1.0, j2)
    mat = np.zeros((2**N, 2**N), dtype=complex)
    for i in range(N):
        for d, coupling in ((1, 1.0), (2, j2)):
            j = (i + d) % N
            for a in "xyz":
                mat += coupling * _kron({i: PAULI[a], j: PAULI[a]}) / 4
    return hilbert, op, mat


def _states_and_expected(model, params, hilbert, mat):
    states = jnp.asarray(hilbert.all_states())
    up = np.array([2 ** (N - 1 - i) for i in range(N)])
    order = ((np.asarray(states) + 1) // 2) @ up  # row of each state in ``mat``
    psi = np.exp(np.asarray(model.apply(params, states)))
    full = np.zeros(2**N, dtype=complex)
    full[order] = psi
    return states, (mat @ full)[order] / psi


def test_operator_knows_when_slots_can_be_empty():
    lat = lattice.chain(N, pbc=True)
    assert not ising(Spin(N), lat, 1.0, 0.7).has_empty_slots  # every flip counts
    assert j1j2(Spin(N), lat, 1.0, 0.5).has_empty_slots  # parallel spins: zero


@pytest.mark.parametrize("batch", [None, 5])
@pytest.mark.parametrize("blocks", [1, 2, 4])
def test_local_energies_match_dense_matrix(monkeypatch, blocks, batch):
    """Every sample of the full basis, with few rows per model call so that the
    loop runs many trips, and the samples split into blocks as over devices."""
    if batch is not None:
        monkeypatch.setattr(connected, "BATCH", batch)
        monkeypatch.setattr(connected, "CONN_BYTES", 40 * N * 33)  # chunks of 40
    hilbert, op, mat = _j1j2_dense(0.4)
    model = PhaseRBM()
    params = model.init(jax.random.key(3), jnp.ones((1, N), jnp.int8))
    states, expected = _states_and_expected(model, params, hilbert, mat)

    @jax.jit  # a fresh trace, so the patched batch sizes apply
    def e_loc(p, s):
        return vstate.local_estimates(model, p, s, op, 16, blocks)

    np.testing.assert_allclose(e_loc(params, states), expected, rtol=1e-11, atol=1e-11)


def test_connected_log_psi_evaluates_exactly_the_needed_slots(monkeypatch):
    monkeypatch.setattr(connected, "BATCH", 3)
    model = PhaseRBM()
    params = model.init(jax.random.key(0), jnp.ones((1, N), jnp.int8))
    key_s, key_n = jax.random.split(jax.random.key(1))
    sigma_p = jax.random.choice(key_s, jnp.array([-1, 1], jnp.int8), (6, 5, N))
    need = jax.random.bernoulli(key_n, 0.4, (6, 5))
    plain = model.apply(params, sigma_p.reshape(-1, N)).reshape(6, 5)
    expected = jnp.where(need, plain, 0)
    for blocks in (1, 2, 3, 4):  # 4 does not divide 6: one block
        for max_rows in (None, 4):  # 4: a memory bound below BATCH
            got = jax.jit(connected.connected_log_psi, static_argnums=(0, 4, 5))(
                model, params, sigma_p, need, blocks, max_rows
            )
            np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13)
    none = connected.connected_log_psi(model, params, sigma_p, need & False)
    np.testing.assert_array_equal(none, jnp.zeros((6, 5)))


def test_needed_slots_on_the_neel_state():
    """J1–J2 chain on the Néel state: the N antiparallel J1 bonds need ψ(σ'); the
    diagonal slot and the N parallel J2 bonds (zero element) do not."""
    _, op, _ = _j1j2_dense(0.5)
    neel = jnp.asarray([[1, -1] * (N // 2)], jnp.int8)
    sigma_p, mels = op.get_conn(neel)
    need = np.asarray(connected.needed_slots(neel, sigma_p, mels))[0]
    assert not need[0] and need.sum() == N
    changed = np.asarray(sigma_p[0, need] != neel).sum(axis=-1)
    np.testing.assert_array_equal(changed, 2)  # each one exchange of neighbours
