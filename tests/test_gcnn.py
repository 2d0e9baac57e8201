"""GCNN: sector characters, layer-by-layer equivariance, vanishing projections,
an independent numpy evaluation, shapes and input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nqs import lattice, symmetry
from nqs.errors import InputError
from nqs.models.gcnn import GCNN, fourier_plan, group_tables

KEY = jax.random.PRNGKey(0)


def spins(seed, shape):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.choice([-1, 1], size=shape), jnp.int8)


def random_params(shapes, seed, scale=0.5):
    """Every leaf N(0, scale^2) (complex normal for complex leaves)."""
    rng = np.random.default_rng(seed)

    def draw(leaf):
        z = rng.normal(scale=scale, size=leaf.shape)
        if jnp.issubdtype(leaf.dtype, jnp.complexfloating):
            z = z + 1j * rng.normal(scale=scale, size=leaf.shape)
        return jnp.asarray(z, leaf.dtype)

    return jax.tree.map(draw, shapes)


def model_and_params(sector, seed=1, **kwargs):
    kwargs = {"layers": 3, "features": 2, **kwargs}
    model = GCNN(sector=sector, **kwargs)
    sigma = jax.ShapeDtypeStruct((1, sector.perms.shape[1]), jnp.int8)
    return model, random_params(jax.eval_shape(model.init, KEY, sigma), seed)


def independent_product(sector) -> np.ndarray:
    """product[g, h] from nqs.symmetry's own group construction."""
    group = symmetry.permutation_group(sector.perms, labels=False)
    assert np.array_equal(group.perms, sector.perms)  # same element order
    return group.product


SQUARE = lattice.square((4, 4))
CHAIN8 = lattice.chain(8)
C128, F64 = jnp.complex128, jnp.float64
SECTORS = [  # (sector, param_dtype): real parameters give complex log psi here too
    pytest.param(symmetry.sector(SQUARE, "space", (0, 0), "A1"), C128, id="square-A1"),
    pytest.param(symmetry.sector(SQUARE, "space", (0, 0), "B1"), C128, id="square-B1"),
    pytest.param(
        symmetry.sector(SQUARE, "space", (2, 2), "B2"), C128, id="square-k22-B2"
    ),
    pytest.param(symmetry.sector(CHAIN8, "translation", 4), C128, id="chain-k4"),
    pytest.param(symmetry.sector(CHAIN8, "translation", 1), C128, id="chain-k1"),
    pytest.param(symmetry.sector(CHAIN8, "translation", 1), F64, id="chain-k1-real"),
    pytest.param(
        symmetry.sector(CHAIN8, "space", 0, "B", spin_flip=-1), C128, id="chain-B-flip-"
    ),
    pytest.param(
        symmetry.sector(CHAIN8, "space", 0, "B", spin_flip=-1),
        F64,
        id="chain-B-flip-real",
    ),
    pytest.param(
        symmetry.sector(CHAIN8, "translation", 3, spin_flip=1),
        C128,
        id="chain-k3-flip+",
    ),
]


@pytest.mark.parametrize(("sector", "param_dtype"), SECTORS)
def test_sector_characters_and_equivariant_layers(sector, param_dtype):
    """psi(sigma[perms[h]]) = chi_h psi(sigma) for every h, psi(-sigma) = s psi, and
    every layer's features move as f(sigma[perms[h]])(g) = f(sigma)(product[h, g])."""
    model, params = model_and_params(
        sector, layers=4, features=(3, 2, 2, 2), param_dtype=param_dtype
    )
    product = independent_product(sector)
    np.testing.assert_array_equal(group_tables(sector).product, product)
    sigma = spins(2, (12, sector.perms.shape[1]))
    # (12, M + 2, N): sigma, its M images and -sigma, evaluated in one call
    batch = jnp.concatenate(
        [sigma[:, None], sigma[:, sector.perms], -sigma[:, None]], 1
    )

    def run(s):
        out, state = model.apply(params, s, mutable=["intermediates"])
        return out, state["intermediates"]["features"]

    out, layers = jax.jit(run)(batch)
    assert out.shape == batch.shape[:-1]  # two batch axes
    assert out.dtype == jnp.complex128
    log_psi, log_moved = out[:, 0], out[:, 1:]
    chi = np.asarray(sector.characters)
    flip = np.nan if sector.spin_flip is None else sector.spin_flip
    expected = np.concatenate([chi, [flip]])
    alive = np.real(log_psi) > -100.0
    assert alive.sum() >= 6  # the check below is not vacuous
    known = np.isfinite(expected)
    ratio = np.exp(np.asarray(log_moved - log_psi[:, None])[alive][:, known])
    np.testing.assert_allclose(
        ratio, np.broadcast_to(expected[known], ratio.shape), atol=1e-8
    )
    assert len(layers) == 4
    for f in layers:  # (12, M + 2, M, ...)
        f = np.asarray(f)
        assert np.std(f[:, 0]) > 0.1  # not a constant feature map
        np.testing.assert_allclose(
            f[:, 1 : 1 + len(product)], f[:, 0][:, product], atol=1e-10, rtol=1e-10
        )


def _selu(x):
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _reference_log_psi(params, sector, sigma):
    """Direct evaluation of the GCNN formulas with loops over the group."""
    p = jax.tree.map(np.asarray, params)["params"]
    perms = np.asarray(sector.perms)
    index = {row.tobytes(): m for m, row in enumerate(perms)}
    n_elem = len(perms)

    def mul(a, b):
        return index[perms[a][perms[b]].tobytes()]

    ident = index[np.arange(perms.shape[1]).tobytes()]
    inv = [next(b for b in range(n_elem) if mul(a, b) == ident) for a in range(n_elem)]
    n_layers = len([k for k in p if k.startswith("kernel_")])

    def act(x):
        return _selu(x.real) + 1j * _selu(x.imag) if np.iscomplexobj(x) else _selu(x)

    def last_features(s):
        f = np.array([s[perms[g]] @ p["kernel_1"] + p["bias_1"] for g in range(n_elem)])
        for layer in range(2, n_layers + 1):
            a, k = act(f), p[f"kernel_{layer}"]
            f = np.array(
                [
                    sum(a[gp] @ k[mul(inv[g], gp)] for gp in range(n_elem))
                    + p[f"bias_{layer}"]
                    for g in range(n_elem)
                ]
            )
        return f.sum(-1)

    weights = np.conj(sector.characters)
    total = np.sum(weights * np.exp(last_features(sigma)))
    if sector.spin_flip is not None:
        total += sector.spin_flip * np.sum(weights * np.exp(last_features(-sigma)))
    return np.log(total + 0j)


@pytest.mark.parametrize("param_dtype", [jnp.complex128, jnp.float64])
@pytest.mark.parametrize(
    "sector",
    [
        pytest.param(symmetry.sector(lattice.chain(6), "space", 1), id="chain6-k1"),
        pytest.param(
            symmetry.sector(lattice.square((2, 3)), "space", (1, 1), spin_flip=-1),
            id="square23-flip",
        ),
    ],
)
def test_matches_a_direct_evaluation(sector, param_dtype):
    model, params = model_and_params(
        sector, seed=4, features=(2, 3, 2), param_dtype=param_dtype
    )
    sigma = spins(5, (3, sector.perms.shape[1]))
    log_psi = np.asarray(jax.jit(model.apply)(params, sigma))
    ref = np.array([_reference_log_psi(params, sector, np.asarray(s)) for s in sigma])
    np.testing.assert_allclose(np.exp(log_psi - ref), 1.0, atol=1e-10)


DERIVATIVE_CASES = [
    pytest.param(  # T = 9 translations, P = C4v
        symmetry.sector(lattice.square((3, 3)), "space", (0, 0), "A1"),
        C128,
        True,
        id="square3-A1",
    ),
    pytest.param(
        symmetry.sector(CHAIN8, "space", 1, spin_flip=-1),
        F64,
        False,
        id="chain-k1-flip-real",
    ),
]


@pytest.mark.parametrize(("sector", "param_dtype", "with_dense"), DERIVATIVE_CASES)
def test_fourier_convolution_derivatives(sector, param_dtype, with_dense):
    """The Fourier convolution and embedding have their own derivative rules: a
    directional derivative matches central differences of psi, and values, the
    directional derivative and a reverse-mode gradient match the dense product's
    (plain autodiff)."""
    n_sites = sector.perms.shape[1]
    sigma = spins(10, (4, n_sites))
    kwargs = {"layers": 2, "features": (3, 2), "param_dtype": param_dtype}
    dense, params = model_and_params(sector, seed=11, fourier=False, **kwargs)
    fourier = GCNN(sector=sector, fourier=True, **kwargs)
    params = jax.tree.map(lambda p: 0.6 * p, params)
    rng = np.random.default_rng(12)
    tangent = random_params(params, 13, scale=0.02)  # |d log psi| ~ 10
    cotangent = jnp.asarray(rng.normal(size=4) + 1j * rng.normal(size=4))

    def derivatives(model, with_fd):
        def f(p):
            return model.apply(p, sigma)

        def run(p, v, u):
            out, linear = jax.linearize(f, p)
            vjp = jax.linear_transpose(linear, p)(u.astype(out.dtype))[0]
            if not with_fd:
                return out, linear(v), vjp, None
            eps = 1e-5
            shifted = jax.tree.map(lambda a, b: a + eps * b, p, v)
            back = jax.tree.map(lambda a, b: a - eps * b, p, v)
            # d psi / psi from central differences of psi, not of log psi
            fd = (jnp.exp(f(shifted) - out) - jnp.exp(f(back) - out)) / (2 * eps)
            return out, linear(v), vjp, fd

        return jax.jit(run)(params, tangent, cotangent)

    out_f, jvp_f, vjp_f, fd_f = derivatives(fourier, with_fd=True)
    assert np.all(np.real(np.asarray(out_f)) > -100.0)  # none vanishing
    np.testing.assert_allclose(fd_f, jvp_f, atol=1e-6 * np.abs(jvp_f).max())
    # reverse mode is the transpose: Re <u, J v> = Re <J^T u, v>
    pairing = sum(
        np.sum(np.asarray(g) * np.asarray(t))
        for g, t in zip(jax.tree.leaves(vjp_f), jax.tree.leaves(tangent), strict=True)
    )
    np.testing.assert_allclose(
        np.real(pairing), np.real(np.sum(cotangent * jvp_f)), rtol=1e-10
    )
    if not with_dense:
        return
    out_d, jvp_d, vjp_d, _ = derivatives(dense, with_fd=False)
    np.testing.assert_allclose(np.exp(out_f - out_d), 1.0, atol=1e-10)
    np.testing.assert_allclose(jvp_f, jvp_d, atol=1e-9 * np.abs(jvp_d).max())
    for leaf_f, leaf_d in zip(
        jax.tree.leaves(vjp_f), jax.tree.leaves(vjp_d), strict=True
    ):
        np.testing.assert_allclose(leaf_f, leaf_d, atol=1e-9 * np.abs(leaf_d).max())
        assert np.abs(leaf_d).max() > 0


def test_fourier_plan_splits_translations_from_the_point_part():
    plan = fourier_plan(symmetry.sector(SQUARE, "space"))
    assert (plan.n_trans, plan.n_point) == (16, 8)
    dft = plan.dft  # unitary up to T: its rows are the 16 characters of Z4 x Z4
    np.testing.assert_allclose(dft @ dft.conj().T, 16 * np.eye(16), atol=1e-10)
    chain = fourier_plan(symmetry.sector(CHAIN8, "translation"))
    assert chain.n_point == 1  # characters exp(2 pi i k / 8), exact to round-off
    np.testing.assert_allclose(
        chain.dft @ chain.dft.conj().T, 8 * np.eye(8), atol=1e-13
    )
    assert fourier_plan(symmetry.sector(SQUARE, "point")) is None  # no translations


def test_real_parameters_in_the_trivial_sector_give_a_real_log_psi():
    sector = symmetry.sector(lattice.chain(6), "space")
    model, params = model_and_params(sector, param_dtype=jnp.float64)
    sigma = spins(6, (3, 6))
    log_psi = jax.jit(model.apply)(params, sigma)
    assert log_psi.dtype == jnp.float64
    ref = [_reference_log_psi(params, sector, np.asarray(s)) for s in sigma]
    np.testing.assert_allclose(log_psi, np.real(ref), atol=1e-10)
    np.testing.assert_allclose(np.imag(ref), 0.0, atol=1e-12)


@pytest.mark.parametrize(
    ("sector", "sigma", "param_dtype"),
    [
        pytest.param(
            symmetry.sector(lattice.chain(4), "translation", 2),
            [1, 1, 1, 1],
            C128,
            id="k2-uniform",
        ),
        pytest.param(
            symmetry.sector(lattice.chain(4), "translation", 0, spin_flip=-1),
            [1, -1, 1, -1],
            F64,
            id="odd-flip-neel-real",
        ),
    ],
)
def test_vanishing_projection_is_finite(sector, sigma, param_dtype):
    """sigma is mapped to itself (or to -sigma) by an element whose weight cancels
    it: psi(sigma) = 0 exactly, so log psi is very negative and gradients finite."""
    model, params = model_and_params(sector, param_dtype=param_dtype)
    batch = jnp.asarray([sigma, [1, 1, -1, 1]], jnp.int8)

    def loss(p):
        log_psi = model.apply(p, batch)
        return jnp.sum(jnp.real(log_psi) + jnp.imag(log_psi)), log_psi

    (_, log_psi), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    assert log_psi.shape == (2,)
    assert np.real(log_psi[0]) < -500.0
    assert np.all(np.isfinite(np.asarray(log_psi)))
    assert np.real(log_psi[1]) > -50.0  # the other configuration is not vanishing
    for leaf in jax.tree.leaves(grad):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert any(np.any(np.asarray(leaf) != 0) for leaf in jax.tree.leaves(grad))


def test_initialisation_is_well_scaled_on_100_sites():
    """Default init (4 layers) on a 10x10 torus with its 100 translations: O(1)
    pre-activations in every layer and a finite log psi."""
    sector = symmetry.sector(lattice.square((10, 10)), "translation")
    model = GCNN(sector=sector)
    sigma = spins(9, (3, 100))

    def run(key, s):
        return model.apply(model.init(key, s), s, mutable=["intermediates"])

    key = jax.random.key(0, impl="unsafe_rbg")  # compiles faster than threefry
    log_psi, state = jax.jit(run)(key, sigma)
    assert np.all(np.isfinite(np.asarray(log_psi)))
    for f in state["intermediates"]["features"]:
        assert 0.2 < np.std(np.asarray(f)) < 3.0


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        pytest.param({"layers": 0}, "layers", id="layers-0"),
        pytest.param({"features": 0}, "features", id="features-0"),
        pytest.param({"layers": 3, "features": (2, 2)}, "features", id="features-len"),
        pytest.param({"layers": 2, "features": (2, -1)}, "features", id="features-neg"),
    ],
)
def test_bad_sizes_raise_input_error_naming_the_field(kwargs, key):
    model = GCNN(sector=symmetry.sector(lattice.chain(4), "translation"), **kwargs)
    with pytest.raises(InputError) as err:
        model.init(KEY, jnp.ones((1, 4), jnp.int8))
    assert err.value.key == key


def test_needs_a_sector():
    with pytest.raises(ValueError, match=r"gcnn needs a \[symmetry\] section"):
        GCNN().init(KEY, jnp.ones((1, 4), jnp.int8))


def test_lattice_too_small_for_distinct_elements():
    """On the 2x1 honeycomb torus different space-group elements coincide."""
    sector = symmetry.sector(lattice.honeycomb((2, 1)), "space")
    assert len(np.unique(sector.perms, axis=0)) < len(sector.perms)
    with pytest.raises(ValueError, match="too small for a GCNN"):
        GCNN(sector=sector).init(KEY, jnp.ones((1, 4), jnp.int8))
