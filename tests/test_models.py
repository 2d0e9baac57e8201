"""Ansätze against independent numpy formulas; custom-model loading and its errors."""

import sys
import textwrap
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nqs import models
from nqs.hilbert import Fock, Spin
from nqs.models import FFN, RBM, Jastrow, LogStateVector, log_cosh
from nqs.models.rbm import (
    PRODUCT_GROUP,
    PRODUCT_MAX_ROWS,
    cos_sin,
    sum_log_cosh,
    sum_log_cosh_parts,
    tanh_parts,
)

REPO = Path(__file__).resolve().parents[1]
KEY = jax.random.PRNGKey(0)


def init(model, sigma):
    return jax.jit(model.init)(KEY, sigma)


def apply(model, variables, sigma):
    return jax.jit(model.apply)(variables, sigma)


def init_shapes(model, n_sites, batch=(1,)):
    """Shapes and dtypes of the variables, without compiling anything."""
    sigma = jax.ShapeDtypeStruct(batch + (n_sites,), jnp.int8)
    return jax.eval_shape(model.init, KEY, sigma)


def random_params(variables, seed, scale, complex_=False):
    """Replace every leaf by N(0, scale^2) numbers (complex if asked)."""
    rng = np.random.default_rng(seed)

    def draw(leaf):
        z = rng.normal(scale=scale, size=leaf.shape)
        if complex_:
            z = z + 1j * rng.normal(scale=scale, size=leaf.shape)
        return jnp.asarray(z, leaf.dtype)

    return jax.tree.map(draw, variables)


def spins(seed, n_batch, n_sites):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.choice([-1, 1], size=(n_batch, n_sites)), jnp.int8)


# -- log cosh --


def test_log_cosh_matches_numpy_and_is_safe():
    x = np.linspace(-20, 20, 81)
    np.testing.assert_allclose(log_cosh(jnp.asarray(x)), np.log(np.cosh(x)), atol=1e-13)
    z = x[:, None] * 0.3 + 1j * np.linspace(-3, 3, 7)[None, :]
    got = np.asarray(log_cosh(jnp.asarray(z)))
    # compare exp(): the imaginary part of a complex log is defined modulo 2 pi
    np.testing.assert_allclose(np.exp(got), np.cosh(z), rtol=1e-12)
    big = jnp.asarray([800.0, -800.0])
    np.testing.assert_allclose(log_cosh(big), 800 - np.log(2), rtol=1e-15)
    zbig = jnp.asarray([800.0 + 0.5j, -800.0 + 0.5j])
    got = np.asarray(log_cosh(zbig))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got.real, 800 - np.log(2), rtol=1e-15)
    np.testing.assert_allclose(np.exp(1j * got.imag), np.exp([0.5j, -0.5j]), atol=1e-12)
    # derivative is tanh (holomorphic), also far out
    grad = jax.grad(lambda t: log_cosh(t).real)(jnp.asarray(3.0))
    np.testing.assert_allclose(grad, np.tanh(3.0), rtol=1e-14)


@pytest.mark.parametrize("rows", [6, PRODUCT_MAX_ROWS + 1], ids=["product", "per-unit"])
@pytest.mark.parametrize(
    "n", [1, 44, PRODUCT_GROUP, PRODUCT_GROUP + 1, 5 * PRODUCT_GROUP - 3]
)
def test_sum_log_cosh_matches_numpy(n, rows):
    rng = np.random.default_rng(n)
    x = rng.normal(scale=4.0, size=(rows, n))
    expected = np.sum(np.log(np.cosh(x)), axis=-1)
    got = np.asarray(jax.jit(sum_log_cosh)(jnp.asarray(x)))
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-13)
    z = x * 0.5 + 1j * rng.normal(scale=2.0, size=x.shape)
    got = np.asarray(jax.jit(sum_log_cosh)(jnp.asarray(z)))
    expected = np.sum(np.log(np.cosh(z)), axis=-1)
    np.testing.assert_allclose(got.real, expected.real, rtol=1e-13, atol=1e-12)
    # imaginary parts agree modulo 2 pi
    np.testing.assert_allclose(np.exp(1j * got.imag), np.exp(1j * expected.imag))


def test_sum_log_cosh_is_safe_and_differentiates_to_tanh():
    # 300 units at |x| = 800: no overflow in the products
    big = jnp.full((2, 300), 800.0).at[1].set(-800.0)
    np.testing.assert_allclose(sum_log_cosh(big), 300 * (800 - np.log(2)), rtol=1e-15)
    zbig = jnp.asarray([[800.0 + 0.5j, -800.0 + 0.25j]])
    got = np.asarray(sum_log_cosh(zbig))
    np.testing.assert_allclose(got.real, 1600 - 2 * np.log(2), rtol=1e-15)
    np.testing.assert_allclose(np.exp(1j * got.imag), np.exp(-0.25j + 0.5j))
    x = jnp.asarray([0.3, -2.0, 25.0])
    np.testing.assert_allclose(jax.grad(sum_log_cosh)(x), np.tanh(x), rtol=1e-15)
    z = jnp.asarray([0.3 + 0.2j, -1.0 + 2.0j])
    _, tangent = jax.jvp(sum_log_cosh, (z,), (jnp.asarray([1.0 + 0j, 0.0]),))
    np.testing.assert_allclose(tangent, np.tanh(0.3 + 0.2j), rtol=1e-14)


# -- complex log cosh in real arithmetic --


def log_cosh_numpy(z):
    """Stable complex log cosh in numpy: w + log1p(exp(-2w)) - log 2, w = ±z."""
    w = np.where(z.real < 0, -z, z)
    return w + np.log1p(np.exp(-2 * w)) - np.log(2)


def assert_same_log(got, expected, rtol, atol):
    """Log-amplitudes agree: real parts, and imaginary parts modulo 2 pi."""
    got, expected = np.asarray(got), np.asarray(expected)
    np.testing.assert_allclose(got.real, expected.real, rtol=rtol, atol=atol)
    np.testing.assert_allclose(
        np.exp(1j * (got.imag - expected.imag)), 1.0, rtol=0, atol=atol
    )


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e6, 1e9], ids=lambda s: f"{s:g}")
def test_cos_sin_matches_numpy(scale):
    rng = np.random.default_rng(int(np.log10(scale)))
    y = rng.normal(scale=scale, size=200_000)
    # quadrant boundaries and their neighbours, signed zeros
    k = np.arange(-12, 13)
    edges = np.concatenate([k * np.pi / 2, k * np.pi / 4, [0.0, -0.0, 1e-300]])
    y = np.concatenate([y, edges, np.nextafter(edges, 10), np.nextafter(edges, -10)])
    c, s = jax.jit(cos_sin)(jnp.asarray(y))
    # two ulp of 1; the reduction is exact, so this holds far out too
    np.testing.assert_allclose(c, np.cos(y), rtol=0, atol=4.5e-16)
    np.testing.assert_allclose(s, np.sin(y), rtol=0, atol=4.5e-16)


def test_cos_sin_beyond_phase_precision_and_other_dtypes():
    y = jnp.asarray([2.0**53, -3e17, 1e300, -1e308])
    c, s = cos_sin(y)
    assert np.all(np.abs(np.asarray(c)) <= 1 + 1e-15)
    assert np.all(np.abs(np.asarray(s)) <= 1 + 1e-15)
    np.testing.assert_allclose(np.asarray(c) ** 2 + np.asarray(s) ** 2, 1, atol=1e-14)
    c, s = cos_sin(jnp.asarray([np.inf, -np.inf, np.nan]))
    assert np.all(np.isnan(np.asarray(c))) and np.all(np.isnan(np.asarray(s)))
    y32 = jnp.asarray([0.1, 2.0, -7.0], jnp.float32)
    c, s = cos_sin(y32)
    assert c.dtype == s.dtype == jnp.float32
    np.testing.assert_array_equal(c, jnp.cos(y32))
    np.testing.assert_array_equal(s, jnp.sin(y32))


@pytest.mark.parametrize("im_scale", [3.0, 300.0], ids=["phase-3", "phase-300"])
@pytest.mark.parametrize("n", [1, 40, PRODUCT_GROUP, PRODUCT_GROUP + 1, 317])
def test_sum_log_cosh_parts_matches_numpy(n, im_scale):
    rng = np.random.default_rng(n)
    x_re = rng.normal(scale=4.0, size=(2, 3, n))
    x_im = rng.normal(scale=im_scale, size=(2, 3, n))
    got = jax.jit(sum_log_cosh_parts)(jnp.asarray(x_re), jnp.asarray(x_im))
    assert got.shape == (2, 3) and got.dtype == jnp.complex128
    expected = np.sum(log_cosh_numpy(x_re + 1j * x_im), axis=-1)
    # numpy's own phase error grows with |x_im| (one ulp of 2 x_im per unit)
    atol = 1e-13 * n + 4 * n * np.spacing(2 * np.max(np.abs(x_im)))
    assert_same_log(got, expected, rtol=1e-14, atol=atol)


def test_sum_log_cosh_parts_far_out_and_on_the_branches():
    # |Re x| = 800 or 1e5: no overflow; cosh x -> exp(|x_re|) e^{i sign(x_re) x_im} / 2
    x_re = jnp.asarray([[800.0, -800.0, 1e5, -1e5]])
    x_im = jnp.asarray([[0.5, 0.25, -2.0, 3.0]])
    got = np.asarray(sum_log_cosh_parts(x_re, x_im))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got.real, 1600 + 2e5 - 4 * np.log(2), rtol=1e-15)
    phase = 0.5 - 0.25 - 2.0 - 3.0
    np.testing.assert_allclose(np.exp(1j * got.imag), np.exp(1j * phase), atol=1e-12)
    # cosh is even and real on the real axis: x and -x agree, conj(x) gives conj
    rng = np.random.default_rng(3)
    x_re, x_im = rng.normal(size=(2, 50, 7)) * 3
    a = np.asarray(sum_log_cosh_parts(jnp.asarray(x_re), jnp.asarray(x_im)))
    b = np.asarray(sum_log_cosh_parts(jnp.asarray(-x_re), jnp.asarray(-x_im)))
    c = np.asarray(sum_log_cosh_parts(jnp.asarray(x_re), jnp.asarray(-x_im)))
    assert_same_log(b, a, rtol=1e-14, atol=1e-13)
    assert_same_log(c, np.conj(a), rtol=1e-14, atol=1e-13)
    # on the imaginary axis (Re x = ±0, tiny) cosh(iy) = cos y, negative past pi/2
    y = np.array([0.3, 2.0, -2.5, 4.0])
    for re in (0.0, -0.0, 1e-300, -1e-300):
        got = sum_log_cosh_parts(jnp.full((4, 1), re), jnp.asarray(y)[:, None])
        assert_same_log(got, np.log(np.cos(y).astype(complex)), rtol=1e-15, atol=1e-15)
    # close to a zero of cosh (i pi/2): relative accuracy of the amplitude
    z = np.array([1e-7 + 1j * (np.pi / 2 + 1e-7), -3e-9 + 1j * (1.5 * np.pi - 2e-8)])
    got = sum_log_cosh_parts(jnp.asarray(z.real)[:, None], jnp.asarray(z.imag)[:, None])
    np.testing.assert_allclose(np.exp(np.asarray(got)), np.cosh(z), rtol=1e-8)


def test_tanh_parts_and_the_derivative_match_numpy():
    rng = np.random.default_rng(5)
    z = rng.normal(scale=3.0, size=300) + 1j * rng.normal(scale=3.0, size=300)
    # far out, tiny real parts (tanh ~ x / cos^2 y), and the real axis
    z = np.concatenate(
        [z, [800 + 0.3j, -800 - 2j, 1e-12 + 0.4j, -1e-12 + 2.0j, 0.7, -5.0]]
    )
    t_re, t_im = tanh_parts(jnp.asarray(z.real), jnp.asarray(z.imag))
    expected = np.tanh(z)
    np.testing.assert_allclose(t_re, expected.real, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(t_im, expected.imag, rtol=1e-13, atol=1e-15)
    tiny = np.abs(z.real) < 1e-6  # Re tanh ~ 1e-12: relative accuracy, no cancellation
    np.testing.assert_allclose(np.asarray(t_re)[tiny], expected.real[tiny], rtol=1e-13)
    x_re, x_im = jnp.asarray(z.real.reshape(6, 51)), jnp.asarray(z.imag.reshape(6, 51))
    d_re = jnp.asarray(rng.normal(size=x_re.shape))
    d_im = jnp.asarray(rng.normal(size=x_re.shape))
    _, tangent = jax.jvp(sum_log_cosh_parts, (x_re, x_im), (d_re, d_im))
    expected = np.sum(np.tanh(z.reshape(6, 51)) * (d_re + 1j * d_im), axis=-1)
    np.testing.assert_allclose(tangent, expected, rtol=1e-13)


# -- RBM --


def rbm_numpy(params, sigma):
    s = np.asarray(sigma, dtype=float)
    theta = s @ np.asarray(params["kernel"]) + np.asarray(params["hidden_bias"])
    return s @ np.asarray(params["visible_bias"]) + np.sum(np.log(np.cosh(theta)), -1)


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_rbm_matches_numpy(dtype):
    n_sites = 7
    model = models.build("rbm", Spin(n_sites), alpha=2, param_dtype=dtype)
    sigma = spins(1, 11, n_sites)
    variables = init(model, sigma)
    is_complex = dtype == "complex128"
    variables = random_params(variables, 2, 0.4, complex_=is_complex)
    got = np.asarray(apply(model, variables, sigma))
    expected = rbm_numpy(variables["params"], sigma)
    assert got.dtype == np.dtype(dtype)
    if is_complex:
        np.testing.assert_allclose(got.real, expected.real, rtol=1e-12)
        np.testing.assert_allclose(np.exp(1j * got.imag), np.exp(1j * expected.imag))
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("scale", [0.4, 40.0], ids=["moderate", "large-theta"])
@pytest.mark.parametrize(
    "biases", [(True, True), (False, True), (True, False)], ids=["ab", "b", "a"]
)
def test_complex_rbm_matches_stable_numpy(biases, scale):
    """Complex RBM (real-arithmetic path) against numpy complex arithmetic, also
    where |theta| ~ 100s and cosh overflows a float."""
    vb, hb = biases
    n_sites = 9
    model = RBM(
        alpha=1.5, param_dtype="complex128", use_visible_bias=vb, use_hidden_bias=hb
    )
    sigma = spins(8, 40, n_sites)
    variables = random_params(init(model, sigma), 9, scale, complex_=True)
    p = {k: np.asarray(v) for k, v in variables["params"].items()}
    s = np.asarray(sigma, dtype=float)
    theta = s @ p["kernel"] + (p["hidden_bias"] if hb else 0)
    expected = np.sum(log_cosh_numpy(theta), axis=-1)
    if vb:
        expected = expected + s @ p["visible_bias"]
    got = apply(model, variables, sigma)
    assert got.dtype == jnp.complex128 and np.all(np.isfinite(np.asarray(got)))
    atol = 1e-12 * max(1.0, np.max(np.abs(theta)))
    assert_same_log(got, expected, rtol=1e-13, atol=atol)


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_rbm_jacobian_matches_numpy(dtype):
    """O = (tanh theta, sigma x tanh theta, sigma) per (hidden_bias, kernel,
    visible_bias); for complex leaves the imaginary-part columns are i O."""
    from nqs import vstate

    model = RBM(alpha=2, param_dtype=dtype)
    sigma = spins(10, 25, 5)
    is_complex = dtype == "complex128"
    variables = random_params(init(model, sigma), 11, 1.5, complex_=is_complex)
    p = {k: np.asarray(v) for k, v in variables["params"].items()}
    s = np.asarray(sigma, dtype=float)
    t = np.tanh(s @ p["kernel"] + p["hidden_bias"])
    per_leaf = {  # tree order of the params dict: sorted keys
        "hidden_bias": t,
        "kernel": (s[:, :, None] * t[:, None, :]).reshape(len(s), -1),
        "visible_bias": s,
    }
    blocks = []
    for name in sorted(per_leaf):
        blocks.append(per_leaf[name])
        if is_complex:
            blocks.append(1j * per_leaf[name])
    expected = np.concatenate(blocks, axis=1)
    got = np.asarray(vstate.jacobian(model, variables, sigma))
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("scale", [0.5, 30.0], ids=["moderate", "large-theta"])
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize(
    "biases", [(True, True), (False, True), (True, False)], ids=["ab", "b", "a"]
)
def test_rbm_log_derivative_gram_matches_jacobian(dtype, biases, scale):
    """G = O O^H with O the autodiff Jacobian (complex derivative: x-columns)."""
    from nqs import vstate

    vb, hb = biases
    model = RBM(alpha=1.5, param_dtype=dtype, use_visible_bias=vb, use_hidden_bias=hb)
    sigma = spins(4, 30, 6)
    is_complex = dtype != "float64"
    variables = random_params(init(model, sigma), 5, scale, complex_=is_complex)
    jac = np.asarray(vstate.jacobian(model, variables, sigma))
    if dtype == "complex128":  # real formulation: [Re part cols, Im part cols] per leaf
        cols, offset = [], 0
        for leaf in jax.tree.leaves(variables):
            cols.extend(range(offset, offset + leaf.size))
            offset += 2 * leaf.size
        jac = jac[:, cols]
    expected = jac @ jac.conj().T
    got = np.asarray(jax.jit(model.log_derivative_gram)(variables, sigma))
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("alpha", [1, 2])
def test_rbm_parameter_count(alpha):
    n = 9
    variables = init_shapes(RBM(alpha=alpha), n)
    n_params = sum(x.size for x in jax.tree.leaves(variables))
    assert n_params == n + alpha * n + alpha * n * n
    no_bias = RBM(alpha=alpha, use_visible_bias=False, use_hidden_bias=False)
    variables = init_shapes(no_bias, n)
    assert sum(x.size for x in jax.tree.leaves(variables)) == alpha * n * n


# -- Jastrow --


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize(
    "hilbert", [Spin(6), Fock(5, n_max=3)], ids=["spin-6", "fock-5"]
)
def test_jastrow_matches_numpy(hilbert, dtype):
    n = hilbert.n_sites
    model = models.build("jastrow", hilbert, param_dtype=dtype)
    sigma = hilbert.random_states(jax.random.PRNGKey(3), 10)
    variables = random_params(init(model, sigma), 4, 0.3, dtype == "complex128")
    w_flat = np.asarray(variables["params"]["kernel"])
    assert w_flat.size == n * (n + 1) // 2
    expected = np.zeros(sigma.shape[0], dtype=w_flat.dtype)
    s = np.asarray(sigma, dtype=float)
    k = 0
    for i in range(n):
        for j in range(i, n):
            expected += w_flat[k] * s[:, i] * s[:, j]
            k += 1
    np.testing.assert_allclose(apply(model, variables, sigma), expected, rtol=1e-12)


def test_jastrow_without_diagonal_is_symmetric_form():
    n = 5
    model = Jastrow(use_diagonal=False)
    sigma = spins(5, 8, n)
    variables = random_params(init(model, sigma), 6, 0.5)
    w = np.zeros((n, n))
    w[np.triu_indices(n, 1)] = variables["params"]["kernel"]
    w_sym = (w + w.T) / 2
    s = np.asarray(sigma, float)
    expected = np.einsum("bi,ij,bj->b", s, w_sym, s)
    np.testing.assert_allclose(apply(model, variables, sigma), expected, rtol=1e-12)


# -- FFN --


def test_ffn_matches_numpy():
    n = 6
    model = FFN(widths=(8, 5), activation="tanh")
    sigma = spins(7, 4, n)
    variables = random_params(init(model, sigma), 8, 0.5)
    p = variables["params"]
    h = np.asarray(sigma, float)
    for name in ("dense_0", "dense_1"):
        h = np.tanh(h @ np.asarray(p[name]["kernel"]) + np.asarray(p[name]["bias"]))
    expected = h @ np.asarray(p["head"]["kernel"])[:, 0]
    np.testing.assert_allclose(apply(model, variables, sigma), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, dtype",
    [
        ({}, jnp.float64),
        ({"param_dtype": "complex128"}, jnp.complex128),
        ({"phase": True}, jnp.complex128),
        ({"activation": "relu", "param_dtype": "complex128"}, jnp.complex128),
        ({"activation": "selu", "alpha": [1, 0.5]}, jnp.float64),
    ],
    ids=["real", "complex", "phase", "complex-relu", "selu-2layers"],
)
def test_ffn_shapes_and_dtypes(kwargs, dtype):
    n = 8
    model = models.build("ffn", Spin(n), **kwargs)
    variables = init_shapes(model, n)
    sigma = jax.ShapeDtypeStruct((2, 3, n), jnp.int8)
    log_psi = jax.eval_shape(model.apply, variables, sigma)
    assert log_psi.shape == (2, 3)
    assert log_psi.dtype == dtype
    if "alpha" in kwargs:
        assert variables["params"]["dense_1"]["kernel"].shape == (8, 4)


def test_ffn_phase_heads():
    model = FFN(widths=(4,), phase=True, activation="gelu")
    sigma = spins(10, 5, 4)
    variables = random_params(init(model, sigma), 11, 0.5)
    p = variables["params"]
    h = np.asarray(sigma, float) @ p["dense_0"]["kernel"] + p["dense_0"]["bias"]
    h = np.asarray(jax.nn.gelu(jnp.asarray(h)))
    expected = h @ p["head"]["kernel"][:, 0] + 1j * (
        h @ p["phase_head"]["kernel"][:, 0]
    )
    np.testing.assert_allclose(apply(model, variables, sigma), expected, rtol=1e-12)


def test_ffn_bad_options():
    with pytest.raises(ValueError, match="activation 'swish'"):
        models.build("ffn", Spin(4), activation="swish")
    with pytest.raises(ValueError, match="phase=True"):
        models.build("ffn", Spin(4), phase=True, param_dtype="complex128")


# -- all built-ins --


BIG = [
    ("rbm", {}),
    ("rbm", {"param_dtype": "complex128"}),
    ("jastrow", {}),
    ("ffn", {"param_dtype": "complex128"}),
    ("ffn", {"phase": True, "activation": "relu", "alpha": [2, 2]}),
]


@pytest.mark.parametrize(
    "kind, kwargs", BIG, ids=[f"{k}-{i}" for i, (k, _) in enumerate(BIG)]
)
def test_fresh_models_on_200_sites_are_moderate(kind, kwargs):
    hilbert = Spin(200)
    model = models.build(kind, hilbert, **kwargs)
    variables = models.check_model(model, hilbert, KEY)
    log_psi = apply(model, variables, hilbert.random_states(jax.random.PRNGKey(1), 64))
    assert bool(jnp.all(jnp.isfinite(log_psi)))
    assert float(jnp.max(jnp.abs(log_psi))) < 10.0
    # the amplitudes are not all the same number either
    assert float(jnp.std(log_psi)) > 1e-3


@pytest.mark.parametrize("kind", ["rbm", "jastrow", "ffn", "logstate"])
def test_complex_params_and_leading_batch_axes(kind):
    hilbert = Spin(6)
    model = models.build(kind, hilbert, param_dtype="complex128")
    variables = models.init_params(model, hilbert, KEY)
    leaves = jax.tree.leaves(variables)
    assert leaves and all(x.dtype == jnp.complex128 for x in leaves)
    kernels = [
        x
        for path, x in jax.tree_util.tree_leaves_with_path(variables)
        if "kernel" in jax.tree_util.keystr(path)
    ]
    # complex-normal initialisation: imaginary parts are not zero
    assert all(float(jnp.max(jnp.abs(x.imag))) > 0 for x in kernels)
    assert kernels or kind == "logstate"
    variables = random_params(variables, 15, 0.3, complex_=True)
    sigma = hilbert.random_states(KEY, 12)

    @jax.jit
    def three_ways(variables, sigma):
        return (
            model.apply(variables, sigma),
            model.apply(variables, sigma.reshape(2, 2, 3, 6)),
            model.apply(variables, sigma[0]),
        )

    flat, nested, single = three_ways(variables, sigma)
    assert nested.shape == (2, 2, 3) and single.shape == ()
    np.testing.assert_allclose(nested, flat.reshape(2, 2, 3))
    np.testing.assert_allclose(single, flat[0])


@pytest.mark.parametrize("kind", ["rbm", "logstate"])
def test_apply_is_traced_once(kind):
    hilbert = Spin(6)
    model = models.build(kind, hilbert)
    n_traces = 0

    def f(variables, sigma):
        nonlocal n_traces
        n_traces += 1
        return apply(model, variables, sigma)

    f_jit = jax.jit(f)
    for seed in range(3):
        key = jax.random.PRNGKey(seed)
        variables = random_params(models.init_params(model, hilbert, key), seed, 0.1)
        f_jit(variables, hilbert.random_states(key, 16))
    assert n_traces == 1
    # equal modules hash equally, so a rebuilt model is the same static argument
    assert hash(models.build(kind, hilbert)) == hash(model)


# -- LogStateVector --


@pytest.mark.parametrize(
    "hilbert",
    [Spin(6, total_sz=0), Spin(3, s=1), Fock(3, n_max=2, n_particles=3)],
    ids=["spin-sz0", "spin1", "fock"],
)
def test_log_state_vector_is_theta(hilbert):
    model = models.build("log_state_vector", hilbert, param_dtype="complex128")
    variables = models.init_params(model, hilbert, KEY)
    theta = variables["params"]["theta"]
    assert theta.shape == (hilbert.n_states,)
    assert float(jnp.max(jnp.abs(theta))) == 0.0  # default: uniform state
    variables = random_params(variables, 12, 1.0, complex_=True)
    theta = np.asarray(variables["params"]["theta"])
    basis = hilbert.all_states()
    got = apply(model, variables, jnp.asarray(basis))
    np.testing.assert_array_equal(np.asarray(got), theta)
    perm = np.random.default_rng(0).permutation(len(basis))
    got = apply(model, variables, jnp.asarray(basis[perm]))
    np.testing.assert_array_equal(np.asarray(got), theta[perm])


def test_log_state_vector_outside_basis_is_zero_amplitude():
    hilbert = Spin(4, total_sz=0)
    model = LogStateVector(hilbert, init_scale=0.1)
    variables = models.init_params(model, hilbert, KEY)
    sigma = jnp.asarray([[1, 1, 1, 1], [1, -1, 1, -1]], jnp.int8)
    log_psi = apply(model, variables, sigma)
    assert float(log_psi[0]) == -np.inf
    assert np.isfinite(float(log_psi[1]))


# -- custom models --

CUSTOM = """
import flax.linen as nn
import jax.numpy as jnp
from typing import Any


class Product(nn.Module):
    param_dtype: Any = jnp.float64
    scale: float = 1.0

    @nn.compact
    def __call__(self, sigma):
        w = self.param("w", nn.initializers.ones, (sigma.shape[-1],), self.param_dtype)
        return self.scale * (sigma.astype(self.param_dtype) @ w)


class WithHilbert(nn.Module):
    hilbert: Any

    @nn.compact
    def __call__(self, sigma):
        b = self.param("b", nn.initializers.zeros, (self.hilbert.n_sites,))
        return sigma @ b


class BadShape(nn.Module):
    @nn.compact
    def __call__(self, sigma):
        return nn.Dense(1)(sigma.astype(float))


class IntOutput(nn.Module):
    @nn.compact
    def __call__(self, sigma):
        return jnp.sum(sigma, axis=-1)


class NanOutput(nn.Module):
    @nn.compact
    def __call__(self, sigma):
        b = self.param("b", nn.initializers.zeros, (1,))
        return jnp.log(b - 1.0)[0] + jnp.zeros(sigma.shape[:-1])


NOT_A_MODULE = 3
"""


@pytest.fixture
def custom_file(tmp_path):
    path = tmp_path / "my_ansatz.py"
    path.write_text(textwrap.dedent(CUSTOM))
    return path


def test_custom_from_relative_and_absolute_path(custom_file, monkeypatch):
    hilbert = Spin(4)
    monkeypatch.chdir(custom_file.parent)
    for spec in (f"{custom_file.name}:Product", f"{custom_file}:Product"):
        model = models.build(spec, hilbert, param_dtype="complex128", scale=[2.0][0])
        assert model.param_dtype == jnp.complex128
        variables = models.check_model(model, hilbert, KEY)
        sigma = spins(13, 5, 4)
        np.testing.assert_allclose(
            apply(model, variables, sigma), 2.0 * np.sum(np.asarray(sigma), -1)
        )
    model = models.build(f"{custom_file.name}:WithHilbert", hilbert)
    assert model.hilbert == hilbert
    # the config always passes its default param_dtype; a module without the field
    # ignores "float64" but refuses anything else
    spec = f"{custom_file.name}:WithHilbert"
    assert models.build(spec, hilbert, param_dtype="float64").hilbert == hilbert
    with pytest.raises(ValueError, match="unknown argument.* param_dtype"):
        models.build(spec, hilbert, param_dtype="complex128")


def test_custom_from_module_spec(custom_file, monkeypatch):
    monkeypatch.syspath_prepend(str(custom_file.parent))
    monkeypatch.delitem(sys.modules, "my_ansatz", raising=False)
    model = models.build("my_ansatz:Product", Spin(3), scale=0.5)
    assert type(model).__name__ == "Product" and model.scale == 0.5
    assert isinstance(models.build("nqs.models.rbm:RBM", Spin(3), alpha=2), RBM)


def test_example_custom_ansatz_from_configs(monkeypatch):
    monkeypatch.chdir(REPO)
    hilbert = Spin(10, total_sz=0)
    model = models.build("configs/custom_ansatz.py:ModulusPhaseRBM", hilbert, alpha=2)
    variables = models.check_model(model, hilbert, KEY)
    p = random_params(variables, 14, 0.3)["params"]
    sigma = hilbert.random_states(jax.random.PRNGKey(2), 7)
    s = np.asarray(sigma, float)

    def part(name):
        theta = s @ np.asarray(p[name]["kernel"]) + np.asarray(p[name]["bias"])
        return np.sum(np.log(np.cosh(theta)), -1)

    expected = part("modulus") + 1j * part("phase")
    got = model.apply({"params": p}, sigma)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize(
    "spec, kwargs, message",
    [
        ("cnn", {}, "unknown model kind 'cnn'; built-ins are rbm, jastrow, ffn"),
        ("no_such_file.py:X", {}, "file not found"),
        ("{dir}/broken.py:X", {}, "importing .*broken.py failed: ZeroDivisionError"),
        ("no_such_pkg.mod:X", {}, "importing module 'no_such_pkg.mod' failed"),
        ("{dir}/my_ansatz.py:Missing", {}, "has no attribute 'Missing'"),
        ("{dir}/my_ansatz.py:NOT_A_MODULE", {}, "not a flax.linen.Module subclass"),
        ("rbm", {"alpah": 2}, "unknown argument.* alpah; accepted: alpha, use_visible"),
        ("{dir}/my_ansatz.py:Product", {"sclae": 1}, "accepted: param_dtype, scale"),
        ("rbm", {"param_dtype": "float16"}, "param_dtype = 'float16'; expected one"),
        ("rbm:", {}, "expected 'package.module:Class'"),
    ],
    ids=[
        "unknown-builtin",
        "missing-file",
        "import-error",
        "missing-module",
        "missing-attribute",
        "not-a-module",
        "unknown-kwarg",
        "unknown-kwarg-custom",
        "bad-dtype",
        "malformed",
    ],
)
def test_build_errors(custom_file, spec, kwargs, message):
    (custom_file.parent / "broken.py").write_text("x = 1 / 0\n")
    with pytest.raises(ValueError, match=message):
        models.build(spec.format(dir=custom_file.parent), Spin(4), **kwargs)


@pytest.mark.parametrize(
    "cls, message",
    [
        ("BadShape", r"returned shape \(3, 1\) for a batch of 3"),
        ("IntOutput", "returned dtype int"),
        ("NanOutput", "not finite"),
    ],
)
def test_check_model_errors(custom_file, cls, message):
    model = models.build(f"{custom_file}:{cls}", Spin(4))
    with pytest.raises(ValueError, match=message):
        models.check_model(model, Spin(4), KEY)


def test_check_model_reports_failing_call():
    class Broken(nn.Module):
        @nn.compact
        def __call__(self, sigma):
            return sigma @ jnp.ones(3)  # wrong size on 4 sites

    with pytest.raises(ValueError, match=r"model Broken: failed .* \(3, 4\)"):
        models.check_model(Broken(), Spin(4), KEY)


def test_toml_lists_become_tuples():
    model = models.build("ffn", Spin(4), widths=[3, 2])
    assert model.widths == (3, 2)
    hash(model)
