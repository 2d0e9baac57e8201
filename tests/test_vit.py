"""ViT wave function: patch tables, translations, a numpy forward pass, errors."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nqs import lattice as lat
from nqs.errors import InputError
from nqs.models.vit import ViT, patch_tables


def _configs(n_sites: int, n: int, seed: int = 0) -> jax.Array:
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.choice([-1, 1], size=(n, n_sites)), jnp.int8)


def _random_params(model: ViT, n_sites: int, seed: int = 0):
    """Random parameters in the tree of ``model.init`` (without compiling the init):
    kernels N(0, 1/fan_in), LayerNorm scales 1 + N(0, 0.1), other leaves N(0, 0.1),
    so biases are nonzero and the outputs O(1)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), _configs(n_sites, 1))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        x = rng.standard_normal(leaf.shape)
        if name == "kernel":
            return jnp.asarray(x / np.sqrt(leaf.shape[0]), leaf.dtype)
        return jnp.asarray((name == "scale") + np.sqrt(0.1) * x, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def _cells(lattice):
    """(n_sites, n_dim) integer cell and (n_sites,) basis index of each site, found
    from its position: pos = sum_a c_a basis_vectors[a] + site_offsets[b]."""
    vectors = np.asarray(lattice.basis_vectors)
    offsets = np.asarray(lattice.site_offsets)
    cells, basis = [], []
    for r in lattice.positions:
        for b, offset in enumerate(offsets):
            c = np.linalg.solve(vectors.T, r - offset)
            if np.allclose(c, np.round(c), atol=1e-9):
                cells.append(np.round(c).astype(int))
                basis.append(b)
                break
    return np.asarray(cells), np.asarray(basis)


def _translation(lattice, cells_moved) -> np.ndarray:
    """perm with (T sigma)[perm[i]] = sigma[i]: site i moved by ``cells_moved``."""
    cells, basis = _cells(lattice)
    key = {(tuple(c), b): i for i, (c, b) in enumerate(zip(cells, basis, strict=True))}
    moved = (cells + np.asarray(cells_moved)) % np.asarray(lattice.extent)
    return np.array([key[(tuple(c), b)] for c, b in zip(moved, basis, strict=True)])


def _translate(sigma, perm):
    out = np.empty_like(np.asarray(sigma))
    out[..., perm] = np.asarray(sigma)
    return jnp.asarray(out)


def _close_log_psi(a, b, tol=1e-10):
    """Equal real parts; imaginary parts equal modulo 2 pi."""
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a.real, b.real, rtol=0, atol=tol)
    phase = np.angle(np.exp(1j * (a.imag - b.imag)))
    np.testing.assert_allclose(phase, 0.0, rtol=0, atol=tol)


# --- patch tables -----------------------------------------------------------------


def test_patch_tables_chain_by_hand():
    index, shift = patch_tables(lat.chain(8), 2)
    np.testing.assert_array_equal(index, [[0, 1], [2, 3], [4, 5], [6, 7]])
    expected = [[(q - p) % 4 for q in range(4)] for p in range(4)]
    np.testing.assert_array_equal(shift, expected)


TABLE_CASES = [
    pytest.param(lat.honeycomb((3, 3)), 1, id="honeycomb-3x3-p1"),
    pytest.param(lat.honeycomb((4, 2)), (2, 1), id="honeycomb-4x2-p21"),
    pytest.param(lat.kagome((2, 4)), (1, 2), id="kagome-2x4-p12"),
    pytest.param(lat.square((4, 6)), (2, 3), id="square-4x6-p23"),
    pytest.param(lat.chain(12), 3, id="chain-12-p3"),
]


@pytest.mark.parametrize(("lattice", "patch"), TABLE_CASES)
def test_patch_tables_geometry(lattice, patch):
    index, shift = patch_tables(lattice, patch)
    patch = (patch,) * lattice.n_dim if isinstance(patch, int) else patch
    n_basis = len(lattice.site_offsets)
    grid = np.asarray(lattice.extent) // np.asarray(patch)
    assert index.shape == (math.prod(grid), math.prod(patch) * n_basis)
    # every site in exactly one patch
    np.testing.assert_array_equal(np.sort(index.ravel()), np.arange(lattice.n_sites))
    cells, basis = _cells(lattice)
    block = cells[index] // np.asarray(patch)  # (P, S, n_dim) patch of each site
    assert (block == block[:, :1]).all()
    # patches numbered row-major over the patch grid
    origins = block[:, 0]
    np.testing.assert_array_equal(origins, list(np.ndindex(*grid)))
    # the same internal order in every patch: equal offsets from the patch corner
    inner = cells[index] - origins[:, None, :] * np.asarray(patch)
    assert (inner == inner[:1]).all() and (basis[index] == basis[index[:1]]).all()
    # shift[p, q] numbers the grid displacement of q from p
    for p, q in itertools.product(range(len(origins)), repeat=2):
        disp = (origins[q] - origins[p]) % grid
        assert shift[p, q] == np.ravel_multi_index(tuple(disp), tuple(grid))


@pytest.mark.parametrize(("lattice", "patch"), TABLE_CASES)
def test_patch_tables_translation_maps_patches_in_order(lattice, patch):
    index, shift = patch_tables(lattice, patch)
    patch = (patch,) * lattice.n_dim if isinstance(patch, int) else patch
    for axis in range(lattice.n_dim):
        step = np.zeros(lattice.n_dim, int)
        step[axis] = patch[axis]
        perm = _translation(lattice, step)
        moved = perm[index]  # sites of patch p after the translation, in order
        target = np.array([np.flatnonzero(index[:, 0] == m)[0] for m in moved[:, 0]])
        np.testing.assert_array_equal(moved, index[target])
        np.testing.assert_array_equal(shift[np.ix_(target, target)], shift)


# --- numpy reference ----------------------------------------------------------------


def _layer_norm(x, p, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _dense(x, p):
    return x @ p["kernel"] + p["bias"]


def _gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def _reference(lattice, patch, heads, layers, params, sigma):
    """The forward pass in numpy; patches from the site positions."""
    p = jax.tree.map(np.asarray, params)["params"]
    patch = np.asarray((patch,) * lattice.n_dim if isinstance(patch, int) else patch)
    cells, basis = _cells(lattice)
    grid = np.asarray(lattice.extent) // patch
    origins = list(np.ndindex(*grid))
    index = []
    for g in origins:
        members = [
            (tuple(c - np.asarray(g) * patch), b, i)
            for i, (c, b) in enumerate(zip(cells, basis, strict=True))
            if tuple(c // patch) == g
        ]
        index.append([i for _, _, i in sorted(members)])
    n_patches = len(origins)
    x = _dense(np.asarray(sigma, float)[..., np.asarray(index)], p["embed"])
    width = x.shape[-1]
    for layer in range(layers):
        att = p[f"attention_{layer}"]
        h = _layer_norm(x, p[f"norm_attention_{layer}"])
        v = _dense(h, att["value"]).reshape(h.shape[:-1] + (heads, -1))
        mixed = np.zeros_like(v)
        for a, b in itertools.product(range(n_patches), repeat=2):
            disp = tuple((np.asarray(origins[b]) - origins[a]) % grid)
            weight = att["alpha"][:, np.ravel_multi_index(disp, tuple(grid))]
            mixed[..., a, :, :] += weight[:, None] * v[..., b, :, :]
        x = x + _dense(mixed.reshape(x.shape), att["out"])
        h = _layer_norm(x, p[f"norm_mlp_{layer}"])
        x = x + _dense(_gelu(_dense(h, p[f"mlp_in_{layer}"])), p[f"mlp_out_{layer}"])
    z = _layer_norm(x, p["norm_final"]).sum(-2)
    out = _dense(z, p["head"])
    return np.log(np.cosh(out[..., :width] + 1j * out[..., width:])).sum(-1)


@pytest.mark.parametrize(
    ("lattice", "patch", "heads", "layers"),
    [
        pytest.param(lat.chain(8), 2, 2, 2, id="chain-8"),
        pytest.param(lat.square((4, 4)), 2, 1, 1, id="square-4x4"),
        pytest.param(lat.honeycomb((2, 4)), (1, 2), 2, 1, id="honeycomb-2x4"),
    ],
)
def test_matches_numpy_reference(lattice, patch, heads, layers):
    model = ViT(lattice, patch, width=4, heads=heads, layers=layers)
    params = _random_params(model, lattice.n_sites)
    sigma = _configs(lattice.n_sites, 4, seed=3)
    expected = _reference(lattice, patch, heads, layers, params, sigma)
    assert np.abs(expected.real).max() > 0.1  # the comparison is not of near-zeros
    _close_log_psi(jax.jit(model.apply)(params, sigma), expected)


# --- translations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("lattice", "patch", "symmetric", "broken"),
    [
        pytest.param(lat.chain(8), 2, [(2,)], [(1,)], id="chain-8-p2"),
        pytest.param(
            lat.square((4, 4)), 2, [(2, 0), (0, 2)], [(1, 0), (0, 1)], id="square-4x4"
        ),
        pytest.param(
            lat.honeycomb((4, 2)), (2, 1), [(2, 0), (0, 1)], [(1, 0)], id="honeycomb"
        ),
    ],
)
def test_translation_by_a_patch_only(lattice, patch, symmetric, broken):
    model = ViT(lattice, patch, width=4, heads=2, layers=1)
    params = _random_params(model, lattice.n_sites)
    sigma = _configs(lattice.n_sites, 6, seed=5)
    apply = jax.jit(model.apply)
    log_psi = apply(params, sigma)
    for step in symmetric:
        moved = _translate(sigma, _translation(lattice, step))
        _close_log_psi(apply(params, moved), log_psi)
    for step in broken:
        moved = _translate(sigma, _translation(lattice, step))
        assert np.abs(np.asarray(apply(params, moved) - log_psi)).min() > 1e-6


# --- shapes, dtypes, size ---------------------------------------------------------


def test_shapes_and_dtypes():
    model = ViT(lat.chain(6), 2, width=4, heads=2, layers=1)
    params = _random_params(model, 6)
    apply = jax.jit(model.apply)
    flat = apply(params, _configs(6, 6))
    assert flat.shape == (6,)
    out = apply(params, _configs(6, 6).reshape(2, 3, 6))
    assert out.shape == (2, 3) and out.dtype == jnp.complex128
    _close_log_psi(out.reshape(6), flat)
    # dtypes as traced by init and apply (eval_shape: no compilation)
    key, one = jax.random.key(0), _configs(6, 1)
    shapes = jax.eval_shape(model.init, key, one)
    assert all(x.dtype == jnp.float64 for x in jax.tree.leaves(shapes))
    model32 = ViT(lat.chain(6), 2, width=4, heads=2, layers=1, param_dtype=jnp.float32)
    shapes32 = jax.eval_shape(model32.init, key, one)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(shapes32))
    out32 = jax.eval_shape(model32.apply, shapes32, _configs(6, 5))
    assert out32.shape == (5,) and out32.dtype == jnp.complex64


@pytest.mark.parametrize(
    "lattice", [pytest.param(lat.chain(100), id="chain-100"), lat.square((10, 10))]
)
def test_init_moderate_on_100_sites(lattice):
    width = 8
    model = ViT(lattice, 2, width=width, heads=2, layers=1)
    sigma = np.concatenate([_configs(lattice.n_sites, 8), np.ones((1, 100), np.int8)])
    out, _ = jax.jit(model.init_with_output)(jax.random.key(1), sigma)
    out = np.asarray(out)
    assert np.isfinite(out).all()
    # the head's init keeps u, v O(1) on every configuration (all up included)
    assert np.abs(out.real).max() < width


# --- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        pytest.param({"patch": 3}, "patch", id="patch-3-on-4"),
        pytest.param({"patch": (2, 3)}, "patch", id="patch-axis-1"),
        pytest.param({"patch": (2,)}, "patch", id="patch-length"),
        pytest.param({"patch": 0}, "patch", id="patch-0"),
        pytest.param({"width": 0}, "width", id="width-0"),
        pytest.param({"width": 16, "heads": 3}, "heads", id="heads-3-of-16"),
        pytest.param({"heads": 0}, "heads", id="heads-0"),
        pytest.param({"layers": 0}, "layers", id="layers-0"),
    ],
)
def test_bad_input(kwargs, key):
    model = ViT(lat.square((4, 4)), **kwargs)
    with pytest.raises(InputError) as info:
        model.init(jax.random.key(0), _configs(16, 1))
    assert info.value.key == key


def test_missing_lattice_and_wrong_length():
    with pytest.raises(ValueError, match="vit needs the lattice"):
        ViT().init(jax.random.key(0), _configs(4, 1))
    with pytest.raises(ValueError, match="sites"):
        ViT(lat.chain(4)).init(jax.random.key(0), _configs(6, 1))


# --- jit and gradients ------------------------------------------------------------


def test_jit_and_gradient():
    lattice = lat.square((4, 4))
    model = ViT(lattice, 2, width=4, heads=2, layers=1)
    params = _random_params(model, 16)
    sigma = _configs(16, 4)

    def loss(p):
        return jnp.sum(jnp.real(model.apply(p, sigma)))

    value_and_grad = jax.jit(jax.value_and_grad(loss))  # one compilation for all
    grads = jax.tree.map(np.asarray, value_and_grad(params)[1])
    leaves = jax.tree.leaves(grads)
    assert all(np.isfinite(g).all() for g in leaves)
    # directional derivative against a central difference (tree arithmetic in numpy)
    params = jax.tree.map(np.asarray, params)
    direction = jax.tree.map(lambda g: g / (1.0 + np.abs(g)), grads)
    eps = 1e-5
    plus = value_and_grad(jax.tree.map(lambda p, d: p + eps * d, params, direction))
    minus = value_and_grad(jax.tree.map(lambda p, d: p - eps * d, params, direction))
    dot = sum(
        np.vdot(g, d) for g, d in zip(leaves, jax.tree.leaves(direction), strict=True)
    )
    np.testing.assert_allclose((plus[0] - minus[0]) / (2 * eps), dot, rtol=1e-6)
