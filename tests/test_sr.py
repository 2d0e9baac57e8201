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
        init = nn.initializers.normal(0.3)
        w = self.param("w", init, (N_SITES, N_SITES), self.dtype)
        b = self.param("b", init, (N_SITES,), self.dtype)
        a = self.param("a", init, (N_SITES,), self.dtype)
        return jnp.sum(jnp.log(jnp.cosh(x @ w + b)), axis=-1) + x @ a


class PhaseNet(nn.Module):
    """Real parameters, complex output: log|ψ| and phase from two real networks."""

    @nn.compact
    def __call__(self, sigma):
        x = sigma.astype(jnp.float64)
        init = nn.initializers.normal(0.3)
        w = self.param("w", init, (N_SITES, N_SITES))
        v = self.param("v", init, (N_SITES,))
        amp = jnp.sum(jnp.log(jnp.cosh(x @ w)), axis=-1)
        return amp + 1j * jnp.tanh(x @ v)


class ConjNet(nn.Module):
    """Complex parameters entering non-holomorphically (through conj)."""

    @nn.compact
    def __call__(self, sigma):
        x = sigma.astype(jnp.float64)
        init = nn.initializers.normal(0.3)
        w = self.param("w", init, (N_SITES, N_SITES), jnp.complex128)
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
