"""Time-dependent VMC against exact evolution: full-sum TDVP of an exact manifold
reproduces expm(-iHt), a complex RBM conserves the energy in real time, imaginary time
reaches the exact ground state, and the regularisations do what they say."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from nqs import exact, hamiltonian, hilbert, integrate, lattice, models, observables
from nqs import sampler as smp
from nqs.build_dynamics import state_vector
from nqs.drivers import tdvp
from nqs.drivers.tdvp_loop import save_times
from nqs.models.logstate import LogStateVector
from nqs.sr import SR
from nqs.sr_spectral import spectral_solve


def _tfim(n_sites: int, h: float):
    lat = lattice.chain(n_sites, pbc=True)
    hil = hilbert.Spin(n_sites)
    return lat, hil, hamiltonian.ising(hil, lat, J=1.0, h=h)


def _evolve(problem, params, grid, key=1):
    state = tdvp.init_state(problem, jax.random.key(key), params)
    rows = []
    for t in grid:
        state, info = tdvp.advance(problem, state, float(t))
        rows.append(jax.device_get(info))
    return state, rows


def _log_state_params(psi: np.ndarray):
    return {"params": {"theta": jnp.asarray(np.log(psi.astype(complex)))}}


def test_full_sum_exact_manifold_matches_expm():
    """LogStateVector spans the whole space: TDVP is the Schrödinger equation."""
    lat, hil, h1 = _tfim(6, 1.0)
    _, _, h2 = _tfim(6, 2.0)
    _, vecs = exact.ground_state(h2, k=1)
    psi0 = np.asarray(vecs).reshape(hil.n_states, -1)[:, 0]
    rng = np.random.default_rng(0)  # a generic start: add random phases
    psi0 = psi0 * np.exp(0.3j * rng.normal(size=psi0.size))
    psi0 /= np.linalg.norm(psi0)
    mx = observables.build_observable({"kind": "magnetization", "axis": "x"}, hil, lat)
    model = LogStateVector(hil, param_dtype=jnp.complex128)
    ctrl = integrate.Controller(rtol=1e-8, atol=1e-10, dt_min=1e-6, dt_max=0.2)
    problem = tdvp.TDVPProblem(
        model=model,
        sampler=smp.FullSumSampler(hil),
        hamiltonian=h1,
        sr=SR(diag_shift=0.0, solver="dense"),
        integrator="rk45",
        dt=0.01,
        controller=ctrl,
        observables=(("mx", mx),),
    )
    grid = np.linspace(0.0, 1.0, 6)
    state, rows = _evolve(problem, _log_state_params(psi0), grid)
    dense = h1.to_dense()
    psi_exact = scipy.linalg.expm(-1j * dense * 1.0) @ psi0
    psi = state_vector(model, state.params, hil)
    assert abs(np.vdot(psi, psi_exact)) ** 2 > 1 - 1e-6
    mx_dense = mx.to_dense()
    for t, row in zip(grid, rows, strict=True):
        phi = scipy.linalg.expm(-1j * dense * t) @ psi0
        ref = np.real(np.vdot(phi, mx_dense @ phi))
        assert abs(np.real(row["mx/mean"]) - ref) < 1e-6
        assert float(row["t"]) == pytest.approx(t, abs=1e-12)
    assert max(float(r["residual"]) for r in rows[1:]) < 1e-8
    assert int(rows[-1]["n_steps"]) > 5


@pytest.fixture(scope="module")
def rbm_problem():
    lat, hil, h1 = _tfim(8, 1.0)
    model = models.build("rbm", hil, alpha=1, param_dtype="complex128")
    params = model.init(jax.random.key(3), jnp.zeros((1, 8), jnp.int8))
    # well away from the uniform state, where S is nearly singular
    leaves, treedef = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(5)
    leaves = [
        jnp.asarray(0.25 * (rng.normal(size=x.shape) + 1j * rng.normal(size=x.shape)))
        for x in leaves
    ]
    return lat, hil, h1, model, jax.tree_util.tree_unflatten(treedef, leaves)


def test_full_sum_rbm_conserves_energy(rbm_problem):
    """Real time: d<H>/dt = 0 for the exact TDVP flow, so the drift is RK4's error,
    which falls as dt^4."""
    _, hil, h1, model, params = rbm_problem
    drifts = []
    for dt in (0.02, 0.01):
        problem = tdvp.TDVPProblem(
            model=model,
            sampler=smp.FullSumSampler(hil),
            hamiltonian=h1,
            sr=SR(diag_shift=1e-10, solver="dense"),
            integrator="rk4",
            dt=dt,
        )
        _, rows = _evolve(problem, params, np.array([0.0, 0.1, 0.2]))
        energies = np.array([float(r["energy/mean"]) for r in rows])
        drifts.append(np.max(np.abs(energies - energies[0])) / abs(energies[0]))
        # the RBM is not exact: the residual is measurably non-zero but small
        res = max(float(r["residual"]) for r in rows[1:])
        assert 1e-6 < res < 0.3
    assert drifts[1] < 2e-6
    assert drifts[0] / drifts[1] > 8  # fourth order: 16


def test_imaginary_time_reaches_ground_state(rbm_problem):
    _, hil, h1, model, params = rbm_problem
    problem = tdvp.TDVPProblem(
        model=model,
        sampler=smp.FullSumSampler(hil),
        hamiltonian=h1,
        sr=SR(diag_shift=1e-8, solver="dense"),
        integrator="rk23",
        dt=0.02,
        controller=integrate.Controller(rtol=1e-4, atol=1e-6, dt_min=1e-5, dt_max=0.5),
        time="imaginary",
    )
    _, rows = _evolve(problem, params, np.array([0.0, 2.0, 6.0]))
    e0 = float(exact.ground_state(h1, k=1)[0][0])
    energies = [float(r["energy/mean"]) for r in rows]
    assert energies[0] > energies[1] > energies[2]  # monotone decrease
    assert abs(energies[-1] - e0) < 1e-3 * abs(e0)


def test_real_time_monte_carlo_follows_exact(rbm_problem):
    """Sampled TDVP: <X>(t) within a few error bars of the exact curve (short time)."""
    lat, hil, h1, model, params = rbm_problem
    mx = observables.build_observable({"kind": "magnetization", "axis": "x"}, hil, lat)
    rule = smp.MetropolisSampler(
        hil, smp_rule(hil), n_chains=8, n_samples=512, n_discard_per_chain=8
    )
    problem = tdvp.TDVPProblem(
        model=model,
        sampler=rule,
        hamiltonian=h1,
        sr=SR(diag_shift=1e-4, solver="dense"),
        integrator="heun",
        dt=0.02,
        observables=(("mx", mx),),
    )
    grid = np.linspace(0.0, 0.2, 3)
    _, rows = _evolve(problem, params, grid)
    psi0 = state_vector(model, params, hil)
    ref = exact.observable_traces(h1, psi0, grid, (("mx", mx),))["mx"]
    for row, r in zip(rows, ref, strict=True):
        err = float(row["mx/error"])
        assert abs(float(np.real(row["mx/mean"])) - r) < max(5 * err, 5e-3)
    assert 0 < float(rows[-1]["acceptance"]) <= 1


def smp_rule(hil):
    from nqs import rules

    return rules.LocalRule(hil)


def test_observable_traces_against_dense_expm():
    lat, hil, h1 = _tfim(5, 0.7)
    rng = np.random.default_rng(1)
    psi0 = rng.normal(size=hil.n_states) + 1j * rng.normal(size=hil.n_states)
    psi0 /= np.linalg.norm(psi0)
    mz = observables.build_observable({"kind": "magnetization", "axis": "z"}, hil, lat)
    times = np.array([0.0, 0.3, 1.1])
    for imaginary in (False, True):
        out = exact.observable_traces(
            h1, psi0, times, (("mz", mz),), imaginary=imaginary
        )
        dense = h1.to_dense()
        for i, t in enumerate(times):
            phi = scipy.linalg.expm((-1.0 if imaginary else -1j) * dense * t) @ psi0
            phi /= np.linalg.norm(phi)
            assert out["energy"][i] == pytest.approx(
                np.real(np.vdot(phi, dense @ phi)), abs=1e-10
            )
            assert out["mz"][i] == pytest.approx(
                np.real(np.vdot(phi, mz.to_dense() @ phi)), abs=1e-10
            )


def test_spectral_solve_equals_dense_without_cutoffs_and_drops_small_modes():
    rng = np.random.default_rng(2)
    n, p = 40, 12
    x = rng.normal(size=(n, p)) / np.sqrt(n)
    x -= x.mean(axis=0)
    e = rng.normal(size=n) / np.sqrt(n)
    sol, info = spectral_solve(jnp.asarray(x), jnp.asarray(e), 1e-3, rcond=0.0)
    ref = np.linalg.solve(x.T @ x + 1e-3 * np.eye(p), 2 * x.T @ e)
    np.testing.assert_allclose(np.asarray(sol), ref, rtol=1e-10)
    assert int(info["n_modes"]) == p
    # a rank-deficient S: the sharp cutoff is the pseudo-inverse
    x2 = np.concatenate([x[:, :6], x[:, :6] @ rng.normal(size=(6, 6))], axis=1)
    sol, info = spectral_solve(
        jnp.asarray(x2), jnp.asarray(e), 0.0, rcond=1e-10, smooth=False
    )
    np.testing.assert_allclose(
        np.asarray(sol),
        np.linalg.pinv(x2.T @ x2, rcond=1e-10) @ (2 * x2.T @ e),
        rtol=1e-6,
        atol=1e-10,
    )
    assert int(info["n_modes"]) == 6


def test_snr_matches_its_definition_and_cuts_noise():
    """SNR_k = sqrt(n) |mean_i Q_ik| / std_i Q_ik (Q_ik: per-sample force in mode k)."""
    rng = np.random.default_rng(3)
    n, p = 400, 5
    o = rng.normal(size=(n, p))
    o -= o.mean(axis=0)
    signal = o @ np.array([1.0, 0.5, 0.0, 0.0, 0.0])  # two modes carry signal
    e_loc = signal + rng.normal(size=n)
    e_loc -= e_loc.mean()
    x, eps = o / np.sqrt(n), e_loc / np.sqrt(n)
    _, info = spectral_solve(
        jnp.asarray(x), jnp.asarray(eps), 0.0, rcond=0.0, n_samples=n
    )
    lam, v = np.linalg.eigh(x.T @ x)
    q = 2 * (o @ v) * e_loc[:, None]
    snr = np.sqrt(n) * np.abs(q.mean(axis=0)) / q.std(axis=0)
    assert float(info["snr_min"]) == pytest.approx(snr.min(), rel=1e-8)
    assert float(info["snr_median"]) == pytest.approx(np.median(snr), rel=1e-8)
    _, cut = spectral_solve(
        jnp.asarray(x),
        jnp.asarray(eps),
        0.0,
        rcond=0.0,
        snr_cutoff=float(np.sort(snr)[2] * 1.01),
        smooth=False,
        n_samples=n,
    )
    assert int(cut["n_modes"]) == 2


def test_save_times():
    np.testing.assert_allclose(save_times(1.0, 0.25, 0.01), [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(save_times(1.0, 0.3, 0.1), [0, 0.3, 0.6, 0.9, 1.0])
    grid = save_times(1.0, None, 0.1)
    assert grid.size == 11 and grid[-1] == 1.0
    grid = save_times(0.3, 0.1, 0.1)  # 0.3 / 0.1 rounds below 3 in floating point
    assert grid.size == 4 and grid[-1] == 0.3
