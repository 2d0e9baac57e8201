"""VMC driver: ED accuracy, one compilation, resume equality, rollback, kill -9."""

import dataclasses
import functools
import os
import signal
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nqs import checkpoint, hamiltonian, hilbert, lattice, models, rules, sampler
from nqs import log as logmod
from nqs.drivers import loop, vmc
from nqs.observables import build_observable
from nqs.optimizer import build_optimizer
from nqs.sr import SR
from nqs.stats import Stats


def tfim_dense(n, h):
    """H = -Σ Z_i Z_{i+1} - h Σ X_i on a periodic chain, by Kronecker products."""
    x = np.array([[0.0, 1.0], [1.0, 0.0]])
    z = np.diag([1.0, -1.0])

    def op(single, i):
        out = np.eye(1)
        for k in range(n):
            out = np.kron(out, single if k == i else np.eye(2))
        return out

    ham = np.zeros((2**n, 2**n))
    for i in range(n):
        ham -= op(z, i) @ op(z, (i + 1) % n) + h * op(x, i)
    return ham, [op(x, i) for i in range(n)]


def tfim_problem(n=8, n_samples=1024, n_chains=16, lr=0.05, observables=(), **kw):
    lat = lattice.chain(n)
    hil = hilbert.Spin(n)
    ham = hamiltonian.ising(hil, lat, J=1.0, h=1.0)
    model = models.build("rbm", hil, alpha=1)
    smp = sampler.MetropolisSampler(
        hil, rules.LocalRule(hil), n_chains=n_chains, n_samples=n_samples
    )
    obs = tuple((name, build_observable(t, hil, lat)) for name, t in observables)
    opt = build_optimizer({"kind": "sgd", "learning_rate": lr})
    return vmc.VMCProblem(model, smp, ham, opt, SR(diag_shift=0.01), obs, **kw)


@functools.cache
def small_problem():
    """One shared small problem, so that its step compiles once for all tests."""
    return tfim_problem(n=6, n_samples=256, n_chains=8)


def test_tfim8_reaches_exact_energy_and_magnetization(tmp_path):
    ham_dense, xs = tfim_dense(8, 1.0)
    w, v = np.linalg.eigh(ham_dense)
    e0, psi0 = w[0], v[:, 0]
    mx0 = np.mean([psi0 @ x @ psi0 for x in xs])
    problem = tfim_problem(observables=[("mx", {"kind": "magnetization", "axis": "x"})])
    state = vmc.init_state(problem, jax.random.key(0))
    result = loop.run(problem, state, tmp_path, 200, checkpoint_every=100)
    assert result.status == "completed" and result.n_rejected == 0
    assert result.exact_energy == pytest.approx(e0, abs=1e-9)
    data = logmod.read_log(tmp_path / "log.h5")
    assert data["exact"]["energy"] == pytest.approx(e0, abs=1e-9)
    h = data["history"]
    np.testing.assert_array_equal(h["step"], np.arange(200))
    last = slice(-60, None)
    energy = h["energy/mean"][last].mean()
    # error of a 60-step window mean: steps are nearly independent samples
    err = np.sqrt(np.mean(h["energy/error"][last] ** 2) / 60)
    assert abs(energy - e0) < 5 * err + 2e-4 * abs(e0), (energy, e0, err)
    assert h["mx/mean"].dtype == np.float64
    mx = h["mx/mean"][last].mean()
    mx_err = np.sqrt(np.mean(h["mx/error"][last] ** 2) / 60)
    assert abs(mx - mx0) < 5 * mx_err + 2e-3, (mx, mx0, mx_err)
    assert not h["collapsed"].any()


def test_step_compiles_once():
    problem = small_problem()
    state = vmc.init_state(problem, jax.random.key(1))
    state, _ = vmc.vmc_step(problem, state)
    before = vmc.vmc_step._cache_size()
    for _ in range(3):
        state, _ = vmc.vmc_step(problem, state)
    assert vmc.vmc_step._cache_size() == before


class Interrupt(Exception):
    pass


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    problem = small_problem()
    fresh = vmc.init_state(problem, jax.random.key(7))
    full = loop.run(
        problem, fresh, tmp_path / "a", 30, checkpoint_every=5, flush_every=3
    )

    def stop_at_24(record):  # step 24 is buffered, not yet flushed
        if record["event"] == "step" and record["step"] == 24:
            raise Interrupt

    with pytest.raises(Interrupt):
        loop.run(
            problem,
            fresh,
            tmp_path / "b",
            30,
            checkpoint_every=5,
            flush_every=3,
            progress=stop_at_24,
        )
    partial = logmod.read_log(tmp_path / "b" / "log.h5")["history"]["step"]
    # the interruption flushed every finished step, past the last checkpoint (20)
    assert partial[-1] == 24
    ckpt = checkpoint.load(tmp_path / "b" / "checkpoint.npz", fresh)
    assert int(ckpt.step) == 20
    resumed = loop.run(
        problem,
        fresh,
        tmp_path / "b",
        30,
        checkpoint_every=5,
        flush_every=3,
        resume=True,
    )
    for a, b in zip(
        jax.tree_util.tree_leaves(full.state.params),
        jax.tree_util.tree_leaves(resumed.state.params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    ha = logmod.read_log(tmp_path / "a" / "log.h5")["history"]
    hb = logmod.read_log(tmp_path / "b" / "log.h5")["history"]
    np.testing.assert_array_equal(hb["step"], np.arange(30))
    np.testing.assert_array_equal(ha["energy/mean"], hb["energy/mean"])
    final = loop.load_final_params(tmp_path / "b", fresh.params)
    for a, b in zip(
        jax.tree_util.tree_leaves(final),
        jax.tree_util.tree_leaves(full.state.params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def _poison(tree):
    return jax.tree_util.tree_map(lambda x: x * jnp.nan, tree)


def test_nan_parameters_are_rolled_back():
    problem = small_problem()
    state = vmc.init_state(problem, jax.random.key(3))
    for _ in range(3):
        state, info = vmc.vmc_step(problem, state)
    good = state.params
    state = dataclasses.replace(state, params=_poison(state.params))
    state, info = vmc.vmc_step(problem, state)
    assert bool(info["rejected"]) and int(info["n_rejected"]) == 1
    assert float(state.shift_multiplier) == 10.0
    # rolled back to the parameters before the poisoned ones: the previous step's
    assert all(
        bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(state.params)
    )
    assert not any(
        bool(jnp.all(a == b))
        for a, b in zip(
            jax.tree_util.tree_leaves(state.params),
            jax.tree_util.tree_leaves(good),
            strict=True,
        )
        if a.size > 1
    )
    state, info = vmc.vmc_step(problem, state)
    assert not bool(info["rejected"]) and np.isfinite(float(info["energy/mean"]))
    assert float(info["diag_shift"]) == pytest.approx(0.1)  # boosted shift was used
    assert float(state.shift_multiplier) == 5.0  # decaying back


def test_energy_jump_is_rejected():
    problem = small_problem()
    state = vmc.init_state(problem, jax.random.key(4))
    for _ in range(problem.safety.warmup + 5):
        state, info = vmc.vmc_step(problem, state)
        assert not bool(info["rejected"])
    # a much worse state: scramble the parameters
    key = jax.random.key(5)
    bad = jax.tree_util.tree_map(
        lambda x: 3.0 * jax.random.normal(key, x.shape, x.dtype), state.params
    )
    state = dataclasses.replace(state, params=bad)
    state, info = vmc.vmc_step(problem, state)
    assert bool(info["rejected"]) and float(info["energy/mean"]) > -7.0
    state, info = vmc.vmc_step(problem, state)  # rolled back to a good state
    assert not bool(info["rejected"]) and float(info["energy/mean"]) < -7.0


class NaNModel(nn.Module):
    @nn.compact
    def __call__(self, sigma):
        a = self.param("a", nn.initializers.zeros, (sigma.shape[-1],))
        return sigma @ a + jnp.nan


def test_always_nan_model_stops_with_readable_log(tmp_path):
    base = tfim_problem(n=6, n_samples=64, n_chains=4)
    problem = dataclasses.replace(base, model=NaNModel())
    state = vmc.init_state(problem, jax.random.key(0))
    with pytest.raises(loop.DivergenceError, match="consecutive"):
        loop.run(problem, state, tmp_path, 100, flush_every=50)
    h = logmod.read_log(tmp_path / "log.h5")["history"]
    n = problem.safety.max_consecutive_rejections
    np.testing.assert_array_equal(h["step"], np.arange(n))
    assert h["rejected"].all()


def test_collapse_signs():
    sf = vmc.Safety()
    ok = Stats(*(jnp.asarray(v) for v in (-10.0, 0.01, 1.0, 1.0, 1.0)))
    assert not bool(vmc._collapse_signs(sf, ok, 0.3, jnp.asarray(-10.2)))
    assert bool(vmc._collapse_signs(sf, ok, 0.0, jnp.asarray(jnp.nan)))  # no moves
    frozen = Stats(*(jnp.asarray(v) for v in (-9.0, 0.0, 0.0, 0.0, 1.0)))
    assert bool(vmc._collapse_signs(sf, frozen, 0.3, jnp.asarray(-10.2)))  # wrong E
    assert not bool(vmc._collapse_signs(sf, frozen, 0.3, jnp.asarray(-9.0)))  # eigen
    mixed = Stats(*(jnp.asarray(v) for v in (-10.0, 0.01, 1.0, 1.0, 3.0)))
    assert bool(vmc._collapse_signs(sf, mixed, 0.3, jnp.asarray(jnp.nan)))  # R-hat
    # a full sum: error 0, tau and R-hat NaN, acceptance 1
    nan = jnp.nan
    exact_sum = Stats(*(jnp.asarray(v) for v in (-10.0, 0.0, 0.5, nan, nan)))
    assert not bool(vmc._collapse_signs(sf, exact_sum, 1.0, jnp.asarray(-10.2)))
    at_ground = Stats(*(jnp.asarray(v) for v in (-10.2, 0.0, 1e-14, nan, nan)))
    assert not bool(vmc._collapse_signs(sf, at_ground, 1.0, jnp.asarray(-10.2)))
    excited = Stats(*(jnp.asarray(v) for v in (-9.0, 0.0, 1e-14, nan, nan)))
    assert bool(vmc._collapse_signs(sf, excited, 1.0, jnp.asarray(-10.2)))


class PeakedModel(nn.Module):
    """log psi = 30 sum(sigma): all chains freeze in the all-up state."""

    @nn.compact
    def __call__(self, sigma):
        w = self.param("w", nn.initializers.zeros, (1,), jnp.float64)
        return (30.0 + w[0]) * jnp.sum(sigma, axis=-1).astype(jnp.float64)


@pytest.mark.parametrize("patience", [1, 3])
def test_collapse_flag_needs_patience_consecutive_signs(patience):
    base = tfim_problem(n=6, n_samples=64, n_chains=4, lr=0.0)
    problem = dataclasses.replace(
        base, model=PeakedModel(), safety=vmc.Safety(collapse_patience=patience)
    )
    state = vmc.init_state(problem, jax.random.key(0))
    flags, accs = [], []
    for _ in range(8):
        state, info = vmc.vmc_step(problem, state)
        flags.append(bool(info["collapsed"]))
        accs.append(float(info["acceptance"]))
    # chains reach all-up while thermalising, then never move again
    first_stuck = next(i for i, a in enumerate(accs) if a == 0.0)
    assert all(a == 0.0 for a in accs[first_stuck:])
    expected = [i >= first_stuck + patience - 1 for i in range(8)]
    assert flags == expected


def test_memory_estimate_counts_the_jacobian():
    problem = tfim_problem(n=8, n_samples=1024)
    n_params = 8 + 8 + 64
    # Jacobian (n_samples x n_params) and S (n_params^2) in float64, and the model's
    # stored intermediates on the connected configurations of the local energies
    low = (1024 * n_params + n_params**2) * 8
    n_conn = int(problem.hamiltonian.n_conn)
    activations = vmc.activation_bytes(problem.model, 8)
    assert 8 * 8 <= activations < 8 * 8 * 10  # theta (8 hidden units x 8 B) and sums
    low += 1024 * n_conn * activations
    assert low < vmc.estimate_memory(problem) < 4 * low


SCRIPT = textwrap.dedent(
    """
    import sys, jax
    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, {tests!r})
    from test_vmc import tfim_problem
    from nqs.drivers import loop, vmc
    problem = tfim_problem(n=6, n_samples=128, n_chains=8)
    state = vmc.init_state(problem, jax.random.key(11))
    def report(r):
        if r["event"] == "step":
            print(r["step"], flush=True)
    loop.run(problem, state, {run_dir!r}, {n_steps}, checkpoint_every=10,
            flush_every=5, progress=report, resume={resume})
    """
)


@pytest.mark.slow
def test_kill_9_leaves_readable_log_and_resumes(tmp_path):
    run_dir = str(tmp_path / "run")
    tests = os.path.dirname(__file__)
    code = SCRIPT.format(tests=tests, run_dir=run_dir, n_steps=100000, resume=False)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    )
    for line in proc.stdout:
        if int(line) >= 37:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    h = logmod.read_log(os.path.join(run_dir, "log.h5"))["history"]
    n = len(h["step"])
    assert n >= 35 and all(len(v) == n for v in h.values())
    np.testing.assert_array_equal(h["step"], np.arange(n))
    code = SCRIPT.format(tests=tests, run_dir=run_dir, n_steps=60, resume=True)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    h = logmod.read_log(os.path.join(run_dir, "log.h5"))["history"]
    np.testing.assert_array_equal(h["step"], np.arange(60))
    assert np.all(np.isfinite(h["energy/mean"]))
    problem = tfim_problem(n=6, n_samples=128, n_chains=8)
    like = vmc.init_state(problem, jax.random.key(0))
    assert (
        int(checkpoint.load(os.path.join(run_dir, "checkpoint.npz"), like).step) == 60
    )


def test_early_stop_rule():
    rng = np.random.default_rng(0)
    rule = loop.EarlyStop(patience=40, rel_tol=1e-4)
    decreasing = list(-10.0 - 0.01 * np.arange(60) + 1e-4 * rng.normal(size=60))
    flat = list(-10.0 + 1e-3 * rng.normal(size=60))
    assert not loop._converged(decreasing, rule)
    assert loop._converged(flat, rule)
    assert not loop._converged(flat[:30], rule)  # too short to judge


# -- full sum over the basis ----------------------------------------------------------


def full_sum_problem(model, n=6, lr=0.1, diag_shift=0.01, observables=()):
    lat = lattice.chain(n)
    hil = hilbert.Spin(n)
    ham = hamiltonian.ising(hil, lat, J=1.0, h=1.0)
    obs = tuple((name, build_observable(t, hil, lat)) for name, t in observables)
    opt = build_optimizer({"kind": "sgd", "learning_rate": lr})
    smp = sampler.FullSumSampler(hil)
    return vmc.VMCProblem(model, smp, ham, opt, SR(diag_shift=diag_shift), obs)


def test_full_sum_rbm_reaches_exact_energy_without_noise(tmp_path):
    e0 = np.linalg.eigvalsh(tfim_dense(6, 1.0)[0])[0]
    problem = full_sum_problem(models.build("rbm", hilbert.Spin(6), alpha=1))
    state = vmc.init_state(problem, jax.random.key(0))
    result = loop.run(problem, state, tmp_path, 150, checkpoint_every=150)
    assert result.status == "completed" and result.n_rejected == 0
    h = logmod.read_log(tmp_path / "log.h5")["history"]
    assert abs(h["energy/mean"][-1] - e0) < 1e-5 * abs(e0), (h["energy/mean"][-1], e0)
    np.testing.assert_array_equal(h["energy/error"], 0.0)
    assert np.all(np.isnan(h["energy/tau_corr"])) and np.all(
        np.isnan(h["energy/r_hat"])
    )
    np.testing.assert_array_equal(h["acceptance"], 1.0)
    assert not h["collapsed"].any()
    # no randomness: another sampler key gives the same energies
    other = vmc.init_state(problem, jax.random.key(5), params=state.params)
    for step in range(3):
        other, info = vmc.vmc_step(problem, other)
        assert float(info["energy/mean"]) == h["energy/mean"][step]


def test_full_sum_step_is_the_exact_sr_update():
    """One step: the logged energy is <H> of the dense vector, and the update is
    -lr (S + eps)^-1 G with the full-sum (weighted) S and G of ``nqs.sr``."""
    from nqs import vstate
    from nqs.sr import sr_direction

    model = models.build("rbm", hilbert.Spin(6), alpha=1, param_dtype="complex128")
    problem = full_sum_problem(model, lr=0.1)
    state = vmc.init_state(problem, jax.random.key(3))
    params = jax.tree_util.tree_map(lambda x: 30 * x, state.params)  # far from uniform
    state = dataclasses.replace(state, params=params)
    new, info = vmc.vmc_step(problem, state)
    basis = jnp.asarray(hilbert.Spin(6).all_states())
    psi = np.exp(np.asarray(model.apply(params, basis)))
    ham = tfim_dense(6, 1.0)[0]
    energy = np.vdot(psi, ham @ psi).real / np.vdot(psi, psi).real
    assert float(info["energy/mean"]) == pytest.approx(energy, rel=1e-12)
    weights = sampler.sample_weights(problem.sampler, model, params, basis[None])
    e_loc = vstate.local_estimates(model, params, basis, problem.hamiltonian)
    direction, _ = sr_direction(
        model, params, basis, e_loc, problem.sr, 0, weights=weights
    )
    leaves = [jax.tree.leaves(t) for t in (new.params, params, direction)]
    for got, p, d in zip(*leaves, strict=True):
        np.testing.assert_allclose(got, p - 0.1 * d, rtol=1e-10, atol=1e-13)


def test_full_sum_state_vector_reaches_the_ground_state():
    ham_dense, xs = tfim_dense(6, 1.0)
    w, v = np.linalg.eigh(ham_dense)
    mx0 = np.mean([v[:, 0] @ x @ v[:, 0] for x in xs])
    mx = [("mx", {"kind": "magnetization", "axis": "x"})]
    model = models.LogStateVector(hilbert.Spin(6))
    problem = full_sum_problem(model, lr=0.04, diag_shift=1e-4, observables=mx)
    state = vmc.init_state(problem, jax.random.key(0))
    for _ in range(150):
        state, info = vmc.vmc_step(problem, state)
    assert not bool(info["rejected"]) and int(info["n_rejected"]) == 0
    assert abs(float(info["energy/mean"]) - w[0]) < 1e-8 * abs(w[0])
    assert float(info["energy/variance"]) < 1e-7
    assert abs(float(info["mx/mean"].real) - mx0) < 1e-7
    assert float(info["mx/error"]) == 0.0


def test_full_sum_memory_estimate_counts_every_basis_state():
    model = models.build("rbm", hilbert.Spin(8), alpha=1)
    full = full_sum_problem(model, n=8)
    mc = dataclasses.replace(
        full,
        sampler=sampler.ExactSampler(hilbert.Spin(8), n_samples=256, n_chains=1),
    )
    assert full.sampler.n_chains * full.sampler.n_samples_per_chain == 256
    assert vmc.estimate_memory(full) == vmc.estimate_memory(mc)
