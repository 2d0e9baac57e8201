"""SR against explicitly built S and G (finite-difference log-derivatives, dense H)."""

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nqs.models import RBM
from nqs.sr import SR, natural_gradient, solve_dense, solve_minsr, sr_direction

N_SITES = 4


class RealRBM(nn.Module):
    dtype: type = jnp.float64

    @nn.compact
    def __call__(self, sigma):
        x = sigma.astype(jnp.float64)
        n = x.shape[-1]
        init = nn.initializers.normal(0.3)
        w = self.param("w", init, (n, n), self.dtype)
        b = self.param("b", init, (n,), self.dtype)
        a = self.param("a", init, (n,), self.dtype)
        return jnp.sum(jnp.log(jnp.cosh(x @ w + b)), axis=-1) + x @ a


class PhaseNet(nn.Module):
    """Real parameters, complex output: log|ψ| and phase from two real networks."""

    @nn.compact
    def __call__(self, sigma):
        x = sigma.astype(jnp.float64)
        n = x.shape[-1]
        init = nn.initializers.normal(0.3)
        w = self.param("w", init, (n, n))
        v = self.param("v", init, (n,))
        amp = jnp.sum(jnp.log(jnp.cosh(x @ w)), axis=-1)
        return amp + 1j * jnp.tanh(x @ v)


class ConjNet(nn.Module):
    """Complex parameters entering non-holomorphically (through conj)."""

    @nn.compact
    def __call__(self, sigma):
        x = sigma.astype(jnp.float64)
        n = x.shape[-1]
        init = nn.initializers.normal(0.3)
        w = self.param("w", init, (n, n), jnp.complex128)
        z = x @ w
        return jnp.sum(jnp.log(jnp.cosh(z)) + 0.3 * jnp.conj(z) ** 2 / 4, axis=-1)


MODELS = {
    "real": RealRBM(),
    "holomorphic": RealRBM(dtype=jnp.complex128),
    "non-holomorphic": PhaseNet(),
    "complex-conj": ConjNet(),
    # nqs's RBM provides log_derivative_gram: minsr takes the Jacobian-free path
    "gram-real": RBM(alpha=1.5, kernel_scale=0.3),
    "gram-holomorphic": RBM(alpha=1.5, param_dtype=jnp.complex128, kernel_scale=0.3),
}


def tfim_dense(n, h=0.7):
    x = np.array([[0, 1], [1, 0]], float)
    z = np.diag([1.0, -1.0])

    def op(single, i):
        mats = [np.eye(2)] * n
        mats[i] = single
        out = mats[0]
        for m in mats[1:]:
            out = np.kron(out, m)
        return out

    ham = np.zeros((2**n, 2**n))
    for i in range(n):
        ham -= op(z, i) @ op(z, (i + 1) % n) + h * op(x, i)
    return ham


ALL = np.array(list(itertools.product([1, -1], repeat=N_SITES)), dtype=np.int8)


@functools.cache
def explicit_problem(model, n_samples, seed=0):
    """Samples, e_loc, and S, G built from finite differences and a dense H."""
    apply = jax.jit(model.apply)
    params = model.init(jax.random.PRNGKey(seed), ALL[:1])
    rng = np.random.default_rng(seed)
    sigma = ALL[rng.integers(0, len(ALL), n_samples)]
    log_psi_all = np.asarray(apply(params, ALL)).astype(complex)
    psi = np.exp(log_psi_all)
    index = {tuple(s): k for k, s in enumerate(ALL)}
    idx = np.array([index[tuple(s)] for s in sigma])
    e_loc = (tfim_dense(N_SITES) @ psi)[idx] / psi[idx]

    leaves, treedef = jax.tree_util.tree_flatten(params)
    cols = []
    h = 1e-6
    for k, leaf in enumerate(leaves):
        directions = [1.0, 1j] if np.iscomplexobj(leaf) else [1.0]
        for j in range(leaf.size):
            for d in directions:

                def shifted(eps, k=k, j=j, d=d, leaf=leaf):
                    new = list(leaves)
                    flat = np.array(leaf).reshape(-1)
                    flat[j] += eps * d
                    new[k] = jnp.asarray(flat.reshape(leaf.shape))
                    p = jax.tree_util.tree_unflatten(treedef, new)
                    return np.asarray(apply(p, sigma)).astype(complex)

                cols.append((shifted(h) - shifted(-h)) / (2 * h))
    o = np.stack(cols, axis=1)  # (n, P) complex
    do = o - o.mean(0)
    de = e_loc - e_loc.mean()
    s = (do.conj().T @ do).real / n_samples
    g = 2 * (do.conj().T @ de).real / n_samples
    return params, sigma, e_loc, s, g, do


sr_direction_jit = jax.jit(sr_direction, static_argnums=(0, 4))


def to_vector(direction):
    """Real-formulation vector in the same order as the finite differences."""
    parts = []
    for leaf in jax.tree_util.tree_leaves(direction):
        leaf = np.asarray(leaf).reshape(-1)
        if np.iscomplexobj(leaf):
            parts.append(np.stack([leaf.real, leaf.imag], axis=1).reshape(-1))
        else:
            parts.append(leaf)
    return np.concatenate(parts)


@pytest.mark.parametrize("n_samples", [12, 80], ids=["P>n", "P<n"])
@pytest.mark.parametrize("solver", ["dense", "minsr", "cg"])
@pytest.mark.parametrize("kind", list(MODELS))
def test_sr_matches_explicit_system(kind, solver, n_samples):
    model = MODELS[kind]
    params, sigma, e_loc, s, g, _ = explicit_problem(model, n_samples)
    shift = 0.01
    expected = np.linalg.solve(s + shift * np.eye(len(g)), g)
    sr = SR(diag_shift=shift, solver=solver, cg_tol=1e-12, cg_maxiter=2000)
    direction, info = sr_direction_jit(model, params, jnp.asarray(sigma), e_loc, sr, 0)
    got = to_vector(direction)
    np.testing.assert_allclose(
        got, expected, rtol=1e-5, atol=1e-7 * np.abs(expected).max()
    )
    np.testing.assert_allclose(info["grad_norm"], np.linalg.norm(g), rtol=1e-6)


@pytest.mark.parametrize("solver", ["dense", "minsr"])
def test_diag_scale(solver):
    model = MODELS["non-holomorphic"]
    params, sigma, e_loc, s, g, _ = explicit_problem(model, 20, seed=3)
    shift, scale = 1e-3, 0.1
    a = s + shift * np.eye(len(g)) + scale * np.diag(np.diag(s))
    expected = np.linalg.solve(a, g)
    sr = SR(diag_shift=shift, diag_scale=scale, solver=solver)
    direction, _ = sr_direction_jit(model, params, jnp.asarray(sigma), e_loc, sr, 0)
    np.testing.assert_allclose(to_vector(direction), expected, rtol=1e-5, atol=1e-9)


def test_shift_schedule_and_multiplier():
    model = MODELS["real"]
    params, sigma, e_loc, s, g, _ = explicit_problem(model, 30, seed=1)
    sr = SR(solver="dense", shift_schedule=lambda step: 0.1 / (1 + step))
    direction, info = sr_direction_jit(
        model, params, jnp.asarray(sigma), e_loc, sr, 4, shift_multiplier=10.0
    )
    expected = np.linalg.solve(s + 0.2 * np.eye(len(g)), g)
    np.testing.assert_allclose(info["diag_shift"], 0.2)
    np.testing.assert_allclose(to_vector(direction), expected, rtol=1e-5, atol=1e-9)


def test_dense_falls_back_on_singular_s():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5))
    x[:, 2] = 0.0  # a parameter with no effect: S has a zero row and column
    x -= x.mean(0)
    e = rng.normal(size=6)
    g = 2 * x.T @ e
    got = np.asarray(jax.jit(solve_dense)(jnp.asarray(x), jnp.asarray(g), 0.0))
    expected = np.linalg.pinv(x.T @ x) @ g
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


def test_minsr_equals_dense_push_through():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(7, 19)))
    e = jnp.asarray(rng.normal(size=7))
    a = solve_minsr(x, e, 0.05)
    b = solve_dense(x, x.T @ e, 0.05)
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_invalid_settings():
    with pytest.raises(ValueError, match="solver"):
        SR(solver="qr")
    with pytest.raises(ValueError, match="diag_scale"):
        SR(solver="cg", diag_scale=0.1)


def test_auto_solver_choice():
    from nqs.sr import JACOBIAN_BUDGET, choose_solver

    auto = SR()
    assert choose_solver(auto, n_rows=1024, n_params=440) == "dense"
    assert choose_solver(auto, n_rows=1024, n_params=5000) == "minsr"
    huge = JACOBIAN_BUDGET // 8 // 1024 + 1
    assert choose_solver(auto, n_rows=1024, n_params=huge) == "cg"
    # through a model's Gram matrix only the rows x rows kernel is stored
    assert choose_solver(auto, n_rows=1024, n_params=huge, use_gram=True) == "minsr"
    big = int((JACOBIAN_BUDGET // 8) ** 0.5) + 1
    assert choose_solver(auto, n_rows=big, n_params=2 * big, use_gram=True) == "cg"
    assert choose_solver(SR(solver="dense"), n_rows=10, n_params=10**9) == "dense"
    # through the Gram matrix minsr costs m^3/3 against m P^2 + P^3/3 for dense: the
    # complex RBM alpha=2 on 20 sites (860 complex parameters, 1024 samples) is minsr,
    # the real RBM alpha=1 of the TFIM example (440 parameters) stays dense
    assert choose_solver(auto, n_rows=2048, n_params=1720) == "dense"
    assert choose_solver(auto, n_rows=2048, n_params=1720, use_gram=True) == "minsr"
    assert choose_solver(auto, n_rows=1024, n_params=440, use_gram=True) == "dense"


@pytest.mark.parametrize(
    "n_samples, uses_gram", [(12, True), (40, True), (80, False)], ids=str
)
def test_auto_takes_the_gram_path_when_cheaper(monkeypatch, n_samples, uses_gram):
    """Complex RBM with 34 complex parameters: minSR through the Gram matrix while
    n^3/3 < n P^2 + P^3/3 (n < ~63 samples, also for n = 40 > P), else dense."""
    import nqs.sr

    calls = []

    def recording(*args, **kwargs):
        calls.append(args[2].shape[0])
        return gram_solve(*args, **kwargs)

    gram_solve = nqs.sr.gram_solve
    monkeypatch.setattr(nqs.sr, "gram_solve", recording)
    model = MODELS["gram-holomorphic"]
    params, sigma, e_loc, s, g, _ = explicit_problem(model, n_samples)
    expected = np.linalg.solve(s + 0.01 * np.eye(len(g)), g)
    direction, _ = sr_direction(model, params, jnp.asarray(sigma), e_loc, SR(), 0)
    assert (calls == [n_samples]) is uses_gram
    np.testing.assert_allclose(
        to_vector(direction), expected, rtol=1e-5, atol=1e-7 * np.abs(expected).max()
    )


@pytest.mark.parametrize("solver", ["dense", "minsr", "cg"])
@pytest.mark.parametrize(
    "kind", ["holomorphic", "non-holomorphic", "gram-real", "gram-holomorphic"]
)
def test_natural_gradient_with_another_residual(kind, solver):
    """The real-time residual -i E_loc: right-hand side 2 Re<ΔO* Δr>."""
    model = MODELS[kind]
    params, sigma, e_loc, s, _, do = explicit_problem(model, 12)
    r = -1j * e_loc
    g = 2 * (do.conj().T @ (r - r.mean())).real / len(r)
    expected = np.linalg.solve(s + 0.01 * np.eye(len(g)), g)
    sr = SR(diag_shift=0.01, solver=solver, cg_tol=1e-12, cg_maxiter=2000)
    x, _ = jax.jit(natural_gradient, static_argnums=(0, 4))(
        model, params, jnp.asarray(sigma), jnp.asarray(r), sr, 0
    )
    np.testing.assert_allclose(to_vector(x), expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    "kind, expected", [("holomorphic", True), ("complex-conj", False)]
)
def test_holomorphic_detection(kind, expected):
    """Holomorphic ansätze take the complex solve path; others the real one."""
    from nqs.sr import _complex_columns, _is_holomorphic, real_jacobian

    model = MODELS[kind]
    params, sigma, *_ = explicit_problem(model, 12)
    x = real_jacobian(model, params, jnp.asarray(sigma))
    assert bool(_is_holomorphic(x, _complex_columns(params))) is expected


# -- full sums: weighted rows against the dense state vector ------------------------


class ZeroAtZeroMagnetisation(nn.Module):
    """psi = c m^2 exp(RBM), m = sum sigma: psi = 0 where m = 0, with NaN autodiff."""

    @nn.compact
    def __call__(self, sigma):
        x = sigma.astype(jnp.float64)
        init = nn.initializers.normal(0.3)
        c = self.param("c", nn.initializers.ones, (), jnp.float64)
        w = self.param("w", init, (x.shape[-1], 2))
        m = jnp.sum(x, axis=-1)
        return jnp.log(c * m**2) + jnp.sum(jnp.log(jnp.cosh(x @ w)), axis=-1)


FULL_SUM_MODELS = {
    **MODELS,
    "psi-zero": ZeroAtZeroMagnetisation(),
    # fewer hidden units on 6 sites: P < n also for the Gram path
    "gram-real-small": RBM(alpha=0.5, kernel_scale=0.3),
    "gram-holomorphic-small": RBM(
        alpha=0.5, param_dtype=jnp.complex128, kernel_scale=0.3
    ),
}


def _basis(n):
    return np.array(list(itertools.product([1, -1], repeat=n)), dtype=np.int8)


@functools.cache
def dense_metric_and_force(model, n, h=1e-6):
    """S and G from psi on the whole basis and d psi / d theta (central differences).

    S_kl = Re[<d_k psi|d_l psi> / N - <d_k psi|psi><psi|d_l psi> / N^2] and G_k = 2 Re
    <d_k psi|H - E|psi> / N, N = <psi|psi>, with the dense H of ``tfim_dense`` (no
    log-derivatives, no weights, no local energies). Columns in ``to_vector`` order.
    """
    apply = jax.jit(model.apply)
    basis = _basis(n)
    params = model.init(jax.random.PRNGKey(1), basis[:1])

    def amplitudes(p):
        return np.exp(np.asarray(apply(p, basis)).astype(complex))

    leaves, treedef = jax.tree_util.tree_flatten(params)
    cols = []
    for k, leaf in enumerate(leaves):
        directions = [1.0, 1j] if np.iscomplexobj(leaf) else [1.0]
        for j in range(leaf.size):
            for d in directions:

                def shifted(eps, k=k, j=j, d=d, leaf=leaf):
                    new = list(leaves)
                    flat = np.array(leaf).reshape(-1)
                    flat[j] += eps * d
                    new[k] = jnp.asarray(flat.reshape(leaf.shape))
                    return amplitudes(jax.tree_util.tree_unflatten(treedef, new))

                cols.append((shifted(h) - shifted(-h)) / (2 * h))
    psi, dpsi = amplitudes(params), np.stack(cols, axis=1)
    ham = tfim_dense(n)
    norm = np.vdot(psi, psi).real
    energy = np.vdot(psi, ham @ psi).real / norm
    overlap = dpsi.conj().T @ psi / norm
    s = (dpsi.conj().T @ dpsi / norm - np.outer(overlap, overlap.conj())).real
    g = 2 * (dpsi.conj().T @ (ham @ psi - energy * psi)).real / norm
    h_psi = (ham @ psi)[np.abs(psi) > 0]  # E_loc psi on the states where psi != 0
    variance = np.vdot(h_psi, h_psi).real / norm - energy**2
    return params, s, g, variance


def full_sum_inputs(model, params, n):
    """Full-sum samples, Born weights and local energies of the TFIM ring (h = 0.7)."""
    from nqs import hamiltonian, hilbert, lattice, sampler, vstate

    hil = hilbert.Spin(n)
    ham = hamiltonian.ising(hil, lattice.chain(n), J=1.0, h=0.7)
    smp = sampler.FullSumSampler(hil)
    samples, _ = smp.sample(model, params, smp.init(model, params, jax.random.key(0)))
    weights = sampler.sample_weights(smp, model, params, samples)
    e_loc = vstate.local_estimates(model, params, samples, ham)
    return samples, weights, e_loc


FULL_SUM_CASES = [
    (kind, 4, solver)
    for kind in ("real", "holomorphic", "non-holomorphic", "complex-conj", "psi-zero")
    for solver in ("dense", "minsr", "cg")
]
FULL_SUM_CASES += [
    (kind, 6, solver) for kind in ("real", "holomorphic") for solver in ("dense", "cg")
]
FULL_SUM_CASES += [("non-holomorphic", 6, "minsr")]
# the Gram path (minsr of a model with log_derivative_gram)
FULL_SUM_CASES += [
    ("gram-real", 4, "minsr"),
    ("gram-holomorphic", 4, "minsr"),
    ("gram-real-small", 6, "minsr"),
    ("gram-holomorphic-small", 6, "minsr"),
]


@pytest.mark.parametrize(
    "kind, n, solver",
    FULL_SUM_CASES,
    ids=[f"{k}-{n}sites-{s}" for k, n, s in FULL_SUM_CASES],
)
def test_full_sum_sr_equals_dense_state_vector_system(kind, n, solver):
    """4 sites: P > n (16 states); 6 sites: P < 2n rows (64 states)."""
    model = FULL_SUM_MODELS[kind]
    params, s, g, _ = dense_metric_and_force(model, n)
    samples, weights, e_loc = full_sum_inputs(model, params, n)
    shift = 0.01
    expected = np.linalg.solve(s + shift * np.eye(len(g)), g)
    sr = SR(diag_shift=shift, solver=solver, cg_tol=1e-12, cg_maxiter=4000)
    direction, info = sr_direction_jit(
        model, params, samples, e_loc, sr, 0, weights=weights
    )
    got = to_vector(direction)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(
        got, expected, rtol=1e-5, atol=1e-7 * np.abs(expected).max()
    )
    np.testing.assert_allclose(info["grad_norm"], np.linalg.norm(g), rtol=1e-6)


@pytest.mark.parametrize(
    "kind", ["real", "non-holomorphic", "complex-conj", "psi-zero"]
)
def test_real_jacobian_and_residual_with_weights(kind):
    """X^T X = S, 2 X^T e = G and |e|^2 = Var H for the public weighted rows."""
    from nqs.sr import _is_complex_output, real_jacobian, real_residual

    model = FULL_SUM_MODELS[kind]
    params, s, g, variance = dense_metric_and_force(model, 4)
    samples, weights, e_loc = full_sum_inputs(model, params, 4)
    sigma = samples.reshape(-1, 4)
    is_cplx = _is_complex_output(model, params, sigma)
    jacobian = jax.jit(real_jacobian, static_argnums=(0, 3))
    x = jacobian(model, params, sigma, None, weights)
    e = real_residual(e_loc, is_cplx, weights=weights)
    assert x.shape == ((32 if is_cplx else 16), len(g)) and e.shape == x.shape[:1]
    cols = _vector_order(params)  # params_to_real column of each to_vector entry
    x_fd = np.asarray(x)[:, cols]
    np.testing.assert_allclose(x_fd.T @ x_fd, s, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(2 * x_fd.T @ np.asarray(e), g, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(np.sum(np.asarray(e) ** 2), variance, rtol=1e-10)
    chunked = jacobian(model, params, sigma, 5, weights)  # 5 does not divide 16
    np.testing.assert_allclose(chunked, x, rtol=1e-13, atol=1e-13)


def _vector_order(params):
    """Position in ``to_vector`` order of every column of ``params_to_real``."""
    from nqs.sr import params_to_real

    theta, unravel = params_to_real(params)
    probe = unravel(jnp.arange(theta.size, dtype=jnp.float64))
    return to_vector(probe).real.astype(int)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_blocked_gram_matrix_equals_the_plain_product(dtype, monkeypatch):
    """Kernels of 1100 rows (uneven blocks), formed from the upper blocks only."""
    from nqs import sr_solvers
    from nqs.sr_solvers import hermitian_product

    monkeypatch.setattr(sr_solvers, "GRAM_MIN_WORK", 0)  # blocks for this size too
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1100, 300))
    if dtype is np.complex128:
        x = x + 1j * rng.normal(size=x.shape)
    d = rng.uniform(0.5, 2.0, size=300)
    for a, b in ((x, x), (x * d, x)):
        got = np.asarray(hermitian_product(jnp.asarray(a), jnp.asarray(b)))
        np.testing.assert_allclose(got, a @ b.conj().T, rtol=1e-12, atol=1e-10)
    eps = rng.normal(size=1100)
    direct = x.conj().T @ np.linalg.solve(x @ x.conj().T + 0.1 * np.eye(1100), eps)
    np.testing.assert_allclose(solve_minsr(jnp.asarray(x), eps, 0.1), direct, rtol=1e-8)
