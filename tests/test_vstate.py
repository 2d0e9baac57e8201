"""Estimators of nqs.vstate against dense matrices, finite differences and full sums."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nqs import vstate
from nqs.hilbert import Spin
from nqs.models import LogStateVector
from nqs.operator import sigma_x, sigma_y, sigma_z, spin_minus, spin_plus, spin_z
from nqs.rules import LocalRule
from nqs.sampler import ExactSampler, FullSumSampler, MetropolisSampler, sample_weights

N = 6
TRACES = {"n": 0}
F64 = jnp.float64


# -- models ---------------------------------------------------------------------------


def _init(scale):
    return nn.initializers.normal(scale)


class RealRBM(nn.Module):
    """Real parameters, real log psi."""

    @nn.compact
    def __call__(self, sigma):
        x = sigma.astype(jnp.float64)
        h = nn.Dense(N, param_dtype=F64, kernel_init=_init(0.3), bias_init=_init(0.3))(
            x
        )
        a = self.param("a", _init(0.3), (N,), jnp.float64)
        return jnp.sum(jnp.log(jnp.cosh(h)), axis=-1) + x @ a


class ComplexRBM(nn.Module):
    """Complex parameters, holomorphic log psi."""

    @nn.compact
    def __call__(self, sigma):
        x = sigma.astype(jnp.complex128)
        w = self.param("w", _init(0.3), (N, N), jnp.complex128)
        b = self.param("b", _init(0.3), (N,), jnp.complex128)
        a = self.param("a", _init(0.3), (N,), jnp.complex128)
        return jnp.sum(jnp.log(jnp.cosh(x @ w + b)), axis=-1) + x @ a


class PhaseNet(nn.Module):
    """Real parameters, complex log psi = log|psi| + i phase (non-holomorphic)."""

    @nn.compact
    def __call__(self, sigma):
        x = sigma.astype(jnp.float64)
        h = jnp.tanh(
            nn.Dense(4, param_dtype=F64, kernel_init=_init(0.5), bias_init=_init(0.3))(
                x
            )
        )
        log_abs = nn.Dense(1, param_dtype=F64, kernel_init=_init(0.5))(h)[..., 0]
        phase = nn.Dense(1, param_dtype=F64, kernel_init=_init(1.0))(h)[..., 0]
        return log_abs + 1j * phase


class AbsNet(nn.Module):
    """Complex parameters entering through |.|: non-holomorphic in the parameters."""

    @nn.compact
    def __call__(self, sigma):
        TRACES["n"] += 1
        x = sigma.astype(jnp.complex128)
        w = self.param("w", _init(0.4), (N, 3), jnp.complex128)
        z = x @ w
        return jnp.sum(jnp.abs(z) ** 2, axis=-1) * 0.2 + 1j * jnp.sum(z.real, -1)


MODELS = {"real": RealRBM(), "complex": ComplexRBM(), "phase": PhaseNet()}
MODELS["abs"] = AbsNet()


def _params(model, seed=0):
    return model.init(jax.random.key(seed), jnp.ones((1, N), jnp.int8))


# -- operators and their dense matrices, built independently with np.kron -----------

PAULI = {  # local index 0 = entry -1 (down), 1 = entry +1 (up)
    "x": np.array([[0, 1], [1, 0]], dtype=complex),
    "y": np.array([[0, 1j], [-1j, 0]]),
    "z": np.diag([-1.0, 1.0]).astype(complex),
}


def _dense(n, factors):
    """Kronecker product with the given {site: 2x2} factors, site 0 most significant."""
    out = np.ones((1, 1), dtype=complex)
    for i in range(n):
        out = np.kron(out, factors.get(i, np.eye(2)))
    return out


def _tfim_and_dense(hilbert, h=0.8):
    """-sum Z Z - h sum X on an open chain, plus a complex 0.3 sum Y term."""
    n = hilbert.n_sites
    op, mat = 0 * sigma_z(hilbert, 0), np.zeros((2**n, 2**n), dtype=complex)
    for i in range(n - 1):
        op = op - sigma_z(hilbert, i) @ sigma_z(hilbert, i + 1)
        mat -= _dense(n, {i: PAULI["z"], i + 1: PAULI["z"]})
    for i in range(n):
        op = op - h * sigma_x(hilbert, i) + 0.3 * sigma_y(hilbert, i)
        mat += -h * _dense(n, {i: PAULI["x"]}) + 0.3 * _dense(n, {i: PAULI["y"]})
    return op, mat


def _heisenberg(hilbert):
    """sum_<ij> S_i . S_j on a ring (S = sigma / 2) and its dense matrix in hilbert."""
    n = hilbert.n_sites
    op = 0 * spin_z(hilbert, 0)
    full = np.zeros((2**n, 2**n), dtype=complex)
    for i in range(n):
        j = (i + 1) % n
        op = op + spin_z(hilbert, i) @ spin_z(hilbert, j)
        op = op + 0.5 * (spin_plus(hilbert, i) @ spin_minus(hilbert, j))
        op = op + 0.5 * (spin_minus(hilbert, i) @ spin_plus(hilbert, j))
        for a in "xyz":
            full += _dense(n, {i: PAULI[a], j: PAULI[a]}) / 4
    # restrict to the constrained basis: rows of the full basis in all_states order
    up = np.array([2 ** (n - 1 - i) for i in range(n)])
    keep = ((hilbert.all_states() + 1) // 2) @ up
    return op, full[np.ix_(keep, keep)].real


@functools.cache
def _tfim():
    hilbert = Spin(N)
    op, mat = _tfim_and_dense(hilbert)
    return hilbert, op, mat


def _psi(model, params, hilbert):
    return np.exp(np.asarray(model.apply(params, jnp.asarray(hilbert.all_states()))))


# -- local estimates and expectations ----------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_local_estimates_match_dense_matrix(name):
    hilbert, op, mat = _tfim()
    model = MODELS[name]
    params = _params(model)
    psi = _psi(model, params, hilbert)
    expected = (mat @ psi) / psi
    states = jnp.asarray(hilbert.all_states())
    e_loc = vstate.local_estimates(model, params, states, op)
    assert e_loc.dtype == jnp.complex128 and e_loc.shape == (2**N,)
    np.testing.assert_allclose(e_loc, expected, rtol=1e-10, atol=1e-10)
    batched = vstate.local_estimates(model, params, states.reshape(4, 16, N), op)
    np.testing.assert_allclose(batched.reshape(-1), expected, rtol=1e-10, atol=1e-10)
    chunked = vstate.local_estimates(model, params, states, op, chunk_size=7)
    np.testing.assert_allclose(chunked, e_loc, rtol=1e-13, atol=1e-13)


def test_full_sum_expect_matches_dense_quadratic_form():
    hilbert, op, mat = _tfim()
    model = MODELS["phase"]
    params = _params(model)
    psi = _psi(model, params, hilbert)
    exact = np.vdot(psi, mat @ psi) / np.vdot(psi, psi)
    value = vstate.full_sum_expect(model, params, hilbert, op)
    np.testing.assert_allclose(value, exact, rtol=1e-12)
    weights = vstate.full_sum_weights(model, params, hilbert)
    np.testing.assert_allclose(weights, np.abs(psi) ** 2 / np.vdot(psi, psi).real)


def test_mc_expect_agrees_with_full_sum_within_error_bars():
    hilbert, op, _ = _tfim()
    model = MODELS["complex"]
    params = _params(model, seed=2)
    sampler = MetropolisSampler(
        hilbert, LocalRule(hilbert), n_chains=16, n_samples=4096
    )
    state = sampler.init(model, params, jax.random.key(5))
    samples, _ = sampler.sample(model, params, state)
    stats, e_loc = vstate.expect(model, params, samples, op)
    assert e_loc.shape == (16, 256)
    exact = vstate.full_sum_expect(model, params, hilbert, op)
    assert 0 < float(stats.error) < 0.1
    assert abs(complex(stats.mean) - complex(exact)) < 4 * float(stats.error)


def test_exact_eigenstate_has_constant_local_energy():
    hilbert = Spin(8, total_sz=0)
    op, mat = _heisenberg(hilbert)
    energies, vectors = np.linalg.eigh(mat)
    e0, v0 = energies[0], vectors[:, 0]
    assert np.all(np.abs(v0) > 1e-8)  # every basis state carries amplitude
    model = LogStateVector(hilbert, param_dtype=jnp.complex128)
    params = {"params": {"theta": jnp.asarray(np.log(v0.astype(complex)))}}
    states = jnp.asarray(hilbert.all_states())
    stats, e_loc = vstate.expect(model, params, states.reshape(10, 7, 8), op)
    np.testing.assert_allclose(e_loc, e0, rtol=1e-12)
    assert float(stats.variance) < 1e-20
    # a perturbed state is no eigenstate: the test can see a non-zero variance
    theta = params["params"]["theta"] + 0.1 * jnp.cos(jnp.arange(70.0))
    stats, _ = vstate.expect(model, {"params": {"theta": theta}}, states[None], op)
    assert float(stats.variance) > 1e-4


# -- parameters, Jacobian, gradients --------------------------------------------------


def test_ravel_roundtrip_and_real_parameter_count():
    params = _params(MODELS["complex"])  # 3 complex leaves: 36 + 6 + 6 entries
    assert vstate.n_real_params(params) == 2 * 48
    theta, unravel = vstate.ravel(params)
    assert theta.shape == (96,) and theta.dtype == jnp.float64
    back = unravel(theta)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert vstate.n_real_params(_params(MODELS["real"])) == 36 + 6 + 6


def _fd_theta(fn, theta, eps=1e-5):
    """Central differences of fn: (n_real,) -> (...) along every theta direction."""
    basis = jnp.eye(theta.size) * eps
    plus = jax.vmap(fn)(theta + basis)
    minus = jax.vmap(fn)(theta - basis)
    return jnp.moveaxis((plus - minus) / (2 * eps), 0, -1)


@pytest.mark.parametrize("name", list(MODELS))
def test_jacobian_matches_finite_differences(name):
    model = MODELS[name]
    params = _params(model)
    theta, unravel = vstate.ravel(params)
    sigma = Spin(N).random_states(jax.random.key(1), 9)
    jac = vstate.jacobian(model, params, sigma)
    assert jac.shape == (9, theta.size)
    assert jac.dtype == (jnp.float64 if name == "real" else jnp.complex128)
    fd = _fd_theta(lambda t: model.apply(unravel(t), sigma), theta)
    np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-8)
    chunked = vstate.jacobian(model, params, sigma, chunk_size=4)
    np.testing.assert_allclose(chunked, jac, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", list(MODELS))
def test_full_sum_gradient_matches_finite_differences(name):
    hilbert, op, _ = _tfim()
    model = MODELS[name]
    params = _params(model, seed=3)
    theta, unravel = vstate.ravel(params)
    energy, grad = vstate.full_sum_expect_and_grad(model, params, hilbert, op)
    np.testing.assert_allclose(
        energy, vstate.full_sum_expect(model, params, hilbert, op)
    )
    assert jax.tree.structure(grad) == jax.tree.structure(params)
    for g, p in zip(jax.tree.leaves(grad), jax.tree.leaves(params), strict=True):
        assert g.dtype == p.dtype and g.shape == p.shape

    def energy_of(t):
        return jnp.real(vstate.full_sum_expect(model, unravel(t), hilbert, op))

    fd = _fd_theta(energy_of, theta)
    np.testing.assert_allclose(vstate.ravel(grad)[0], fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["real", "phase", "abs"])
def test_mc_gradient_is_covariance_of_jacobian_and_local_energy(name):
    hilbert, op, _ = _tfim()
    model = MODELS[name]
    params = _params(model, seed=4)
    sigma = hilbert.random_states(jax.random.key(7), 50).reshape(5, 10, N)
    e_loc = vstate.local_estimates(model, params, sigma, op)
    jac = vstate.jacobian(model, params, sigma.reshape(-1, N))
    e = e_loc.reshape(-1)
    expected = 2 * jnp.real(
        jnp.mean(jnp.conj(jac - jac.mean(0)) * (e - e.mean())[:, None], axis=0)
    )
    grad = vstate.energy_gradient(model, params, sigma, e_loc)
    np.testing.assert_allclose(vstate.ravel(grad)[0], expected, rtol=1e-10, atol=1e-12)
    chunked = vstate.energy_gradient(model, params, sigma, e_loc, chunk_size=16)
    np.testing.assert_allclose(
        vstate.ravel(chunked)[0], expected, rtol=1e-10, atol=1e-12
    )


def test_local_estimates_compile_once_per_shape():
    hilbert, op, _ = _tfim()
    model = MODELS["abs"]
    params = _params(model)
    sigma = hilbert.random_states(jax.random.key(0), 12)
    vstate.local_estimates(model, params, sigma, op, chunk_size=5)
    n = TRACES["n"]
    params = jax.tree.map(lambda x: 2 * x, params)
    sigma = hilbert.random_states(jax.random.key(1), 12)
    vstate.local_estimates(model, params, sigma, op, chunk_size=5)
    assert TRACES["n"] == n


def test_variational_state_container():
    hilbert, op, _ = _tfim()
    model = MODELS["real"]
    sampler = ExactSampler(hilbert, n_samples=2048, n_chains=8)
    vs = vstate.VariationalState.create(model, sampler, jax.random.key(0))
    stats, grad, vs2 = vs.expect_and_grad(op)
    exact, exact_grad = vstate.full_sum_expect_and_grad(model, vs.params, hilbert, op)
    assert abs(complex(stats.mean) - complex(exact)) < 4 * float(stats.error)
    g, g_exact = vstate.ravel(grad)[0], vstate.ravel(exact_grad)[0]
    assert float(jnp.dot(g, g_exact)) > 0.5 * float(jnp.dot(g_exact, g_exact))
    stats2, vs3 = vs2.expect(op)
    assert float(stats2.mean.real) != float(stats.mean.real)  # new samples
    assert not jnp.array_equal(vs3.sampler_state.key, vs2.sampler_state.key)


# -- full sums: weighted estimators -------------------------------------------------


class ZeroAtZeroMagnetisation(nn.Module):
    """psi = c m^2 RBM(sigma), m = sum sigma: psi = 0 on the m = 0 states.

    Autodiff of log(c m^2) at m = 0 is 0 x inf = NaN, so only estimators that leave
    the psi = 0 states out are finite.
    """

    @nn.compact
    def __call__(self, sigma):
        x = sigma.astype(jnp.float64)
        c = self.param("c", nn.initializers.ones, (), jnp.float64)
        a = self.param("a", _init(0.3), (x.shape[-1],), jnp.float64)
        m = jnp.sum(x, axis=-1)
        return jnp.log(c * m**2) + jnp.sum(jnp.log(jnp.cosh(x + a)), axis=-1)


def _full_sum_case(model, params, hilbert):
    """Full-sum samples (1, n_states, n_sites), their weights, and psi in that order."""
    smp = FullSumSampler(hilbert)
    samples, _ = smp.sample(model, params, smp.init(model, params, jax.random.key(0)))
    weights = sample_weights(smp, model, params, samples)
    psi = np.exp(np.asarray(model.apply(params, samples[0])).astype(complex))
    return samples, weights, psi


def _heisenberg_op(hilbert):
    from nqs import hamiltonian, lattice

    return hamiltonian.heisenberg(hilbert, lattice.chain(hilbert.n_sites), J=1.0)


@pytest.mark.parametrize(
    "name, n_sites, total_sz",
    [
        ("real", 6, None),
        ("complex", 6, None),
        ("rbm-real", 8, 0),
        ("rbm-complex", 8, 0),
        ("rbm-complex", 7, 0.5),
    ],
    ids=[
        "real-6",
        "complex-6",
        "rbm-real-8-sz0",
        "rbm-complex-8-sz0",
        "rbm-complex-7-sz0.5",
    ],
)
def test_full_sum_expect_equals_dense_quadratic_form(name, n_sites, total_sz):
    from nqs.models import RBM

    hilbert = Spin(n_sites, total_sz=total_sz)
    if name.startswith("rbm"):
        dtype = jnp.complex128 if name.endswith("complex") else jnp.float64
        model = RBM(alpha=1, param_dtype=dtype, kernel_scale=0.4)
        params = model.init(jax.random.key(3), jnp.ones((1, n_sites), jnp.int8))
        op, mat = _heisenberg(hilbert)  # ring; rows restricted to the sector
        # the operator nqs builds for the same ring: its own dense matrix agrees
        np.testing.assert_allclose(_heisenberg_op(hilbert).to_dense(), mat, atol=1e-13)
    else:
        model, params = MODELS[name], _params(MODELS[name], seed=5)
        op, mat = _tfim_and_dense(hilbert)
    samples, weights, psi = _full_sum_case(model, params, hilbert)
    assert weights.shape == (1, hilbert.n_states)
    exact = np.vdot(psi, mat @ psi) / np.vdot(psi, psi)
    stats, e_loc = vstate.expect(model, params, samples, op, weights=weights)
    np.testing.assert_allclose(complex(stats.mean), exact, rtol=1e-12, atol=1e-12)
    variance = np.vdot(mat @ psi, mat @ psi).real / np.vdot(psi, psi).real
    np.testing.assert_allclose(float(stats.variance), variance - abs(exact) ** 2)
    assert float(stats.error) == 0.0
    assert np.isnan(float(stats.tau_corr)) and np.isnan(float(stats.r_hat))
    assert e_loc.shape == (1, hilbert.n_states)
    chunked, _ = vstate.expect(model, params, samples, op, 5, weights)
    np.testing.assert_allclose(chunked.mean, stats.mean, rtol=1e-13)


def test_full_sum_with_vanishing_amplitudes_is_finite_and_exact():
    hilbert, op, mat = _tfim()
    model = LogStateVector(hilbert)
    rng = np.random.default_rng(0)
    theta = rng.normal(size=hilbert.n_states)
    theta[::5] = -np.inf  # psi = 0 on every fifth basis state
    params = {"params": {"theta": jnp.asarray(theta)}}
    samples, weights, psi = _full_sum_case(model, params, hilbert)
    w = np.asarray(weights)[0]
    assert np.all(w[::5] == 0) and np.all(w[np.isfinite(theta)] > 0)
    exact = np.vdot(psi, mat @ psi) / np.vdot(psi, psi)
    stats, e_loc = vstate.expect(model, params, samples, op, weights=weights)
    assert np.all(np.isfinite(e_loc))
    np.testing.assert_allclose(complex(stats.mean), exact, rtol=1e-12)
    # d E / d theta_k = 2 w_k Re(E_loc(k) - E): O_k(sigma) = delta(sigma, k)
    grad = vstate.energy_gradient(model, params, samples, e_loc, weights=weights)
    keep = w > 0
    e_dense = np.zeros(hilbert.n_states, complex)
    e_dense[keep] = (mat @ psi)[keep] / psi[keep]
    expected = np.where(keep, 2 * w * (e_dense - exact).real, 0.0)
    np.testing.assert_allclose(grad["params"]["theta"], expected, atol=1e-13)


def test_full_sum_gradient_skips_nan_derivatives_where_psi_vanishes():
    hilbert, op, mat = _tfim()
    model = ZeroAtZeroMagnetisation()
    params = _params(model, seed=1)
    theta, unravel = vstate.ravel(params)
    samples, weights, psi = _full_sum_case(model, params, hilbert)
    assert np.sum(np.asarray(weights) == 0) == 20  # C(6, 3) states with m = 0
    stats, grad = vstate.expect_and_grad(model, params, samples, op, weights=weights)

    def dense_energy(t):
        log_psi = model.apply(unravel(t), samples[0])
        amp = jnp.exp(log_psi.astype(complex))
        return jnp.real(jnp.vdot(amp, mat @ amp) / jnp.vdot(amp, amp))

    np.testing.assert_allclose(float(stats.mean.real), dense_energy(theta), rtol=1e-12)
    g = vstate.ravel(grad)[0]
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, _fd_theta(dense_energy, theta), rtol=1e-6, atol=1e-9)


def test_variational_state_with_full_sum_sampler_is_exact():
    hilbert, op, mat = _tfim()
    model = MODELS["complex"]
    vs = vstate.VariationalState.create(
        model, FullSumSampler(hilbert), jax.random.key(2)
    )
    psi = _psi(model, vs.params, hilbert)
    stats, _ = vs.expect(op)
    exact = np.vdot(psi, mat @ psi) / np.vdot(psi, psi)
    np.testing.assert_allclose(complex(stats.mean), exact, rtol=1e-12)
    _, grad, _ = vs.expect_and_grad(op)
    _, expected = vstate.full_sum_expect_and_grad(model, vs.params, hilbert, op)
    np.testing.assert_allclose(
        vstate.ravel(grad)[0], vstate.ravel(expected)[0], rtol=1e-12, atol=1e-14
    )
