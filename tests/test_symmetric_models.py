"""Symmetric ansätze: the sector's characters for random parameters, the projection
of any module, zero projections, and runs in a sector against its exact energy."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nqs_cli.app import app
from typer.testing import CliRunner

from nqs import (
    build_sectors,
    config,
    exact,
    hamiltonian,
    hilbert,
    lattice,
    models,
    symmetry,
)
from nqs.models.projection import (
    ZERO_LOG_AMPLITUDE,
    Symmetrized,
    log_weighted_sum,
    symmetric_images,
)


class TinyNet(nn.Module):
    """A random non-symmetric module: one dense layer, complex log-amplitude."""

    @nn.compact
    def __call__(self, sigma):
        x = jnp.asarray(sigma, jnp.float64)
        h = jnp.tanh(nn.Dense(6, param_dtype=jnp.float64)(x))
        re = nn.Dense(1, param_dtype=jnp.float64)(h)[..., 0]
        im = nn.Dense(1, param_dtype=jnp.float64)(h)[..., 0]
        return re + 1j * im


SECTORS = {
    "chain8-T-k1": (lambda: lattice.chain(8), "translation", (1,), None, None),
    "chain8-space-k4-B": (lambda: lattice.chain(8), "space", (4,), "B", None),
    "chain8-T-k1-flip-": (lambda: lattice.chain(8), "translation", (1,), None, -1),
    "square4-space-B1": (lambda: lattice.square((4, 4)), "space", (0, 0), "B1", None),
    "square4-space-k22-A2": (lambda: lattice.square((4, 4)), "space", (2, 2), "A2", 1),
    "square4-T-k10": (lambda: lattice.square((4, 4)), "translation", (1, 0), None, 1),
}


def _sector(name):
    make, group, momentum, irrep, flip = SECTORS[name]
    return symmetry.sector(make(), group, momentum, irrep, flip)


def _random_sigma(key, n_sites, batch=5):
    """(batch, n) ±1 int8 with total S^z = 0."""
    keys = jax.random.split(key, batch)
    base = jnp.array([1, -1] * (n_sites // 2), jnp.int8)
    return jnp.stack([jax.random.permutation(k, base) for k in keys])


def _assert_characters(model, sector, key, complex_params=True):
    """psi(sigma[perms[h]]) = chi_h psi(sigma) for every element h, and
    psi(-sigma) = s psi(sigma) with a spin flip."""
    n = sector.perms.shape[1]
    sigma = _random_sigma(key, n)
    variables = model.init(jax.random.key(1), sigma)
    variables = jax.tree_util.tree_map(  # away from the small initial scale
        lambda p: p * 3.0, variables
    )
    log_psi = np.asarray(model.apply(variables, sigma))
    scale = log_psi.real.max()  # amplitudes relative to the largest (zeros stay 0)
    psi = np.exp(log_psi - scale)
    moved = model.apply(variables, sigma[:, np.asarray(sector.perms)])  # (B, M)
    np.testing.assert_allclose(
        np.exp(np.asarray(moved) - scale), sector.characters * psi[:, None], atol=1e-8
    )
    if sector.spin_flip is not None:
        flipped = np.exp(np.asarray(model.apply(variables, -sigma)) - scale)
        np.testing.assert_allclose(flipped, sector.spin_flip * psi, atol=1e-8)


RBM_CASES = [(name, "complex128") for name in SECTORS] + [
    ("chain8-space-k4-B", "float64"),
    ("square4-space-k22-A2", "float64"),
]


@pytest.mark.parametrize("name, dtype", RBM_CASES)
def test_rbm_symm_has_the_sector_characters(name, dtype):
    sector = _sector(name)
    model = models.build("rbm_symm", None, sector=sector, alpha=2, param_dtype=dtype)
    _assert_characters(model, sector, jax.random.key(3))


@pytest.mark.parametrize("name", SECTORS)
def test_projected_custom_module_has_the_sector_characters(name):
    sector = _sector(name)
    _assert_characters(Symmetrized(TinyNet(), sector), sector, jax.random.key(4))


def test_projection_is_the_character_sum():
    """log psi_P against the sum written out with numpy, spin flip included."""
    sector = _sector("chain8-T-k1-flip-")
    model = Symmetrized(TinyNet(), sector)
    sigma = _random_sigma(jax.random.key(5), 8, batch=3)
    variables = model.init(jax.random.key(6), sigma)
    inner = {"params": variables["params"]["module"]}
    expected = np.zeros(3, complex)
    for perm, chi in zip(sector.perms, sector.characters, strict=True):
        for sign in (1, -1):
            log_term = TinyNet().apply(inner, sign * sigma[:, perm])
            weight = np.conj(chi) * (1 if sign == 1 else sector.spin_flip)
            expected += weight * np.exp(np.asarray(log_term))
    got = np.exp(np.asarray(model.apply(variables, sigma)))
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_trivial_real_sector_gives_real_log_amplitudes():
    sector = symmetry.sector(lattice.chain(8), "space")
    rbm = models.build("rbm_symm", None, sector=sector, alpha=4)
    sigma = _random_sigma(jax.random.key(0), 8)
    out = rbm.apply(rbm.init(jax.random.key(1), sigma), sigma)
    assert out.dtype == jnp.float64
    # round(alpha N / M) = 2 filters on each of the 16 images: 32 hidden units
    params = rbm.init(jax.random.key(1), sigma)["params"]
    assert params["kernel"].shape == (8, 2)


def test_zero_projection_is_finite_with_finite_gradient():
    """On a 4-site chain at k = pi/2 the Neel state is invariant under the
    translation by two sites, whose character is -1: its projection vanishes."""
    sector = symmetry.sector(lattice.chain(4), "translation", (1,))
    model = models.build("rbm_symm", None, sector=sector, param_dtype="complex128")
    neel = jnp.array([[1, -1, 1, -1], [1, 1, -1, -1]], jnp.int8)
    variables = model.init(jax.random.key(0), neel)
    log_psi = model.apply(variables, neel)
    assert np.all(np.isfinite(np.asarray(log_psi)))
    assert log_psi[0].real < ZERO_LOG_AMPLITUDE / 2 < log_psi[1].real

    def re_log(params):
        return jnp.sum(model.apply({"params": params}, neel).real)

    grads = jax.grad(re_log)(variables["params"])
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))


def test_log_weighted_sum_is_stable():
    """Terms of log-modulus 800 neither overflow nor lose the small ones' phase."""
    logs = jnp.array([[800.0 + 0.3j, 800.0 - 0.2j, 10.0]])
    weights = np.array([1.0, -1.0j, 2.0])
    got = log_weighted_sum(logs, weights)
    expected = 800 + np.log(np.exp(0.3j) - 1j * np.exp(-0.2j) + 2 * np.exp(-790.0))
    np.testing.assert_allclose(np.asarray(got)[0], expected, rtol=1e-14)


def test_images_and_weights_shapes():
    sector = _sector("square4-space-k22-A2")
    sigma = _random_sigma(jax.random.key(0), 16, batch=2)[None]  # (1, 2, 16)
    images = symmetric_images(sigma, sector)
    assert images.shape == (1, 2, 2 * len(sector.perms), 16)
    model = Symmetrized(TinyNet(), sector)
    variables = model.init(jax.random.key(1), sigma)
    assert model.apply(variables, sigma).shape == (1, 2)


def _sector_energy(cfg_text):
    cfg = config.loads(cfg_text)
    return build_sectors.exact_in_sector(cfg)["energy"]


CHAIN8 = """
name = "chain8"
seed = 3
[lattice]
kind = "chain"
extent = [8]
[hilbert]
kind = "spin"
total_sz = 0
[hamiltonian]
kind = "heisenberg"
[model]
kind = "{kind}"
param_dtype = "complex128"
{model}
[symmetry]
group = "space"
momentum = [4]
[sampler]
kind = "full_sum"
[driver]
n_steps = {steps}
[optimizer]
kind = "sgd"
learning_rate = 0.05
"""


@pytest.mark.parametrize(
    "kind, model",
    [
        ("rbm_symm", "alpha = 2"),
        ("rbm", "alpha = 1\nsymmetrize = true\nkernel_scale = 0.2"),
    ],
)
def test_run_finds_the_triplet_at_k_pi(tmp_path, kind, model):
    """The lowest state at k = pi of the 8-site Heisenberg chain (the triplet above
    the k = 0 singlet) within 1e-3 of the sector's exact energy, which the log
    stores instead of the whole space's ground state."""
    text = CHAIN8.format(kind=kind, model=model, steps=80)
    path = tmp_path / "c.toml"
    path.write_text(text)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    from nqs import log as logmod

    data = logmod.read_log(out / "log.h5")
    sector_e = _sector_energy(text)
    # independent check of the sector energy: the dense Hamiltonian's spectrum on
    # the k = pi states built by hand from the translation of the 8-site chain
    ham = hamiltonian.heisenberg(hilbert.Spin(8, total_sz=0), lattice.chain(8), J=1.0)
    dense = exact._as_matrix(ham).toarray()
    dense_k_pi = _dense_momentum_pi_lowest(ham.hilbert, dense)
    assert sector_e == pytest.approx(dense_k_pi, abs=1e-9)
    assert data["exact"]["energy"] == pytest.approx(sector_e, abs=1e-10)
    energy = np.real(data["history"]["energy/mean"][-10:]).mean()
    assert abs(energy - sector_e) / abs(sector_e) < 1e-3
    # the singlet ground state at k = 0 lies well below the triplet
    assert sector_e > np.linalg.eigvalsh(dense)[0] + 0.5


def _dense_momentum_pi_lowest(hil, dense):
    """Lowest energy among states with T psi = -psi (T: translation by one site),
    from the dense matrix restricted to the T = -1 eigenspace."""
    states = np.asarray(hil.all_states())
    index = {tuple(s): i for i, s in enumerate(states)}
    shift = np.array([index[tuple(np.roll(s, 1))] for s in states])
    n = len(states)
    t_matrix = np.zeros((n, n))
    t_matrix[shift, np.arange(n)] = 1.0
    w, v = np.linalg.eig(t_matrix)  # a permutation matrix: unitary
    q, _ = np.linalg.qr(v[:, np.abs(w + 1) < 1e-9])
    return float(np.linalg.eigvalsh(q.conj().T @ dense @ q)[0])


def _invoke(tmp_path, text, *args):
    path = tmp_path / "c.toml"
    path.write_text(text)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(path), "-o", str(out), *args])
    return result, out


_SYMMETRY = '[symmetry]\ngroup = "space"\nmomentum = [4]\n'


@pytest.mark.parametrize(
    "change, key",
    [
        ((_SYMMETRY, ""), "model.kind"),
        (('kind = "rbm_symm"', 'kind = "rbm"'), "model.symmetrize"),
        (("alpha = 2", "alpha = 2\nsymmetrize = true"), "model.symmetrize"),
        (("alpha = 2", "alpha = -1"), "model.alpha"),
    ],
    ids=["needs-symmetry", "plain-model-in-sector", "double-projection", "alpha"],
)
def test_bad_symmetric_input_names_the_key(tmp_path, change, key):
    text = CHAIN8.format(kind="rbm_symm", model="alpha = 2", steps=2)
    assert change[0] in text
    result, out = _invoke(tmp_path, text.replace(*change))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {key}:"), result.stderr
    assert not out.exists()


def test_symmetrize_without_a_sector_names_the_key(tmp_path):
    text = CHAIN8.format(kind="rbm", model="symmetrize = true", steps=2)
    text = text.replace(_SYMMETRY, "")
    result, out = _invoke(tmp_path, text)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: model.symmetrize:"), result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "kind, fields, key",
    [
        ("gcnn", "features = 0", "model.features"),
        ("gcnn", "layers = 0", "model.layers"),
        ("gcnn", "layers = 2\nfeatures = [4, 4, 4]", "model.features"),
        ("vit", "patch = 3", "model.patch"),
        ("vit", "width = 16\nheads = 3", "model.heads"),
    ],
    ids=["features", "layers", "features-length", "patch", "heads"],
)
def test_bad_network_shape_names_the_key(tmp_path, kind, fields, key):
    """One line naming the key, exit 2, nothing written (the networks refuse the
    values themselves; the config passes them through)."""
    text = CHAIN8.format(kind=kind, model=fields, steps=2)
    result, out = _invoke(tmp_path, text)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {key}:"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_vit_in_a_sector_is_projected():
    """A ViT is invariant only under translations by a patch; in a sector it is
    projected, so it carries the sector's characters under every element."""
    lat = lattice.chain(8)
    sector = symmetry.sector(lat, "space", (4,), "B")
    model = models.build("vit", None, lattice=lat, sector=sector, width=8, heads=2)
    assert isinstance(model, Symmetrized)
    _assert_characters(model, sector, jax.random.key(7))
