"""Hilbert spaces against brute-force enumeration with itertools."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nqs import hilbert as hilbert_module
from nqs.hilbert import Fock, Spin

CASES = [
    pytest.param(Spin(5), (-1, 1), None, id="spin-half-5"),
    pytest.param(Spin(6, total_sz=0), (-1, 1), 0, id="spin-half-6-sz0"),
    pytest.param(Spin(5, total_sz=-1.5), (-1, 1), -3, id="spin-half-5-sz-1.5"),
    pytest.param(Spin(4, s=1), (-2, 0, 2), None, id="spin-1-4"),
    pytest.param(Spin(4, s=1, total_sz=1), (-2, 0, 2), 2, id="spin-1-4-sz1"),
    pytest.param(Spin(3, s=1.5), (-3, -1, 1, 3), None, id="spin-3/2-3"),
    pytest.param(Spin(4, s=1.5, total_sz=0), (-3, -1, 1, 3), 0, id="spin-3/2-4-sz0"),
    pytest.param(Spin(3, s=1.5, total_sz=4.5), (-3, -1, 1, 3), 9, id="spin-3/2-full"),
    pytest.param(Fock(3, 2), (0, 1, 2), None, id="fock-3-nmax2"),
    pytest.param(Fock(4, 3, n_particles=5), (0, 1, 2, 3), 5, id="fock-4-nmax3-n5"),
    pytest.param(Fock(5, 2, n_particles=0), (0, 1, 2), 0, id="fock-empty"),
    pytest.param(Fock(4, 1, n_particles=2), (0, 1), 2, id="fock-hardcore"),
]


def brute_force(values, n_sites, total):
    """All configurations in lexicographic order of values, filtered by their sum."""
    states = [
        c
        for c in itertools.product(values, repeat=n_sites)
        if total is None or sum(c) == total
    ]
    return np.array(states, dtype=np.int8).reshape(len(states), n_sites)


@pytest.mark.parametrize(("hi", "values", "total"), CASES)
def test_structure_and_enumeration(hi, values, total):
    expected = brute_force(values, hi.n_sites, total)
    assert hi.local_values == values
    assert hi.local_size == len(values)
    assert hi.constraint_sum == total
    assert hi.n_states == len(expected)
    states = hi.all_states()
    assert states.dtype == np.int8
    np.testing.assert_array_equal(states, expected)


@pytest.mark.parametrize(("hi", "values", "total"), CASES)
def test_states_to_indices(hi, values, total, monkeypatch):
    states = hi.all_states()
    expected = np.arange(hi.n_states)
    out = hi.states_to_indices(states)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    np.testing.assert_array_equal(out, expected)
    # batch axes are kept
    np.testing.assert_array_equal(
        hi.states_to_indices(states[::-1].reshape(1, -1, hi.n_sites)),
        expected[::-1].reshape(1, -1),
    )
    out_jax = jax.jit(hi.states_to_indices)(jnp.asarray(states))
    assert isinstance(out_jax, jax.Array)
    np.testing.assert_array_equal(np.asarray(out_jax), expected)
    # the general numpy path (used when a dense lookup table would be too large)
    monkeypatch.setattr(hilbert_module, "_DENSE_TABLE_MAX", 0)
    monkeypatch.setattr(hilbert_module, "_FLOAT_KEY_MAX", 0)
    np.testing.assert_array_equal(hi.states_to_indices(states), expected)


@pytest.mark.parametrize(("hi", "values", "total"), CASES)
def test_invalid_states_give_minus_one(hi, values, total, monkeypatch):
    every = brute_force(values, hi.n_sites, None)
    in_basis = np.array([total is None or sum(c) == total for c in every.tolist()])
    bad_value = np.tile(hi.all_states()[:1], (3, 1))
    bad_value[:, 0] = max(values) + 1  # not an allowed entry
    bad_value[1, -1] = min(values) - 1
    queries = np.concatenate([every, bad_value])
    valid = np.concatenate([in_basis, np.zeros(3, bool)])
    index_jax, is_valid = jax.jit(lambda s: (hi.states_to_indices(s), hi.is_valid(s)))(
        jnp.asarray(queries)
    )
    for out in (hi.states_to_indices(queries), np.asarray(index_jax)):
        np.testing.assert_array_equal(out < 0, ~valid)
        assert set(out[out < 0].tolist()) <= {-1}
    np.testing.assert_array_equal(np.asarray(is_valid), valid)
    monkeypatch.setattr(hilbert_module, "_DENSE_TABLE_MAX", 0)
    monkeypatch.setattr(hilbert_module, "_FLOAT_KEY_MAX", 0)
    np.testing.assert_array_equal(hi.states_to_indices(queries) < 0, ~valid)


@pytest.mark.parametrize(("hi", "values", "total"), CASES)
def test_local_index_round_trip(hi, values, total):
    idx = jnp.arange(hi.local_size)
    sigma = hi.indices_to_values(idx)
    assert sigma.dtype == jnp.int8
    np.testing.assert_array_equal(np.asarray(sigma), values)
    np.testing.assert_array_equal(np.asarray(hi.values_to_indices(sigma)), idx)


@pytest.mark.parametrize(("hi", "values", "total"), CASES)
def test_random_states_valid_and_uniform(hi, values, total):
    n = 400 * hi.n_states

    @jax.jit
    def draw(key):
        sigma = hi.random_states(key, n)
        return sigma, jnp.all(hi.is_valid(sigma))

    sigma, all_valid = draw(jax.random.key(1))
    assert sigma.shape == (n, hi.n_sites) and sigma.dtype == jnp.int8
    assert bool(all_valid)
    counts = np.bincount(hi.states_to_indices(np.asarray(sigma)), minlength=hi.n_states)
    assert counts.size == hi.n_states and np.all(counts > 0)
    # chi^2 against the uniform distribution: mean dof, sd sqrt(2 dof); 5 sd margin
    expected = n / hi.n_states
    chi2 = np.sum((counts - expected) ** 2 / expected)
    dof = hi.n_states - 1
    assert chi2 < dof + 5 * np.sqrt(2 * max(dof, 1)), chi2


def test_random_states_large_constrained_marginals():
    """Site marginals of uniform draws from a space too large to enumerate.

    P(m_i = m) = #(39 sites with sum 2*total_sz - 2m) / #(40 sites with 2*total_sz).
    """
    hi, n = Spin(40, s=1, total_sz=3), 4000

    @jax.jit
    def draw(key):
        sigma = hi.random_states(key, n)
        return sigma, jnp.all(hi.is_valid(sigma))

    sigma, all_valid = draw(jax.random.key(0))
    assert bool(all_valid)
    # coefficients of (1 + x + x^2)^39: ways 39 sites reach each local-index sum
    coefficients = [1]
    for _ in range(39):
        padded = [0, 0, *coefficients, 0, 0]
        coefficients = [sum(padded[r : r + 3]) for r in range(len(padded) - 2)]
    # the local-index sum is 40 + 3 = 43; a site with local index k leaves 43 - k
    exact = np.array([coefficients[43 - k] for k in range(3)], dtype=float)
    exact /= exact.sum()
    for site in (0, 20, 39):
        freq = np.array([np.mean(np.asarray(sigma[:, site]) == v) for v in (-2, 0, 2)])
        sd = np.sqrt(exact * (1 - exact) / n)
        np.testing.assert_array_less(np.abs(freq - exact), 5 * sd)


def test_n_states_large_closed_forms():
    from math import comb

    assert Spin(24, total_sz=0).n_states == comb(24, 12) == 2_704_156
    assert Spin(100).n_states == 2**100
    assert Fock(10, 30, n_particles=10).n_states == comb(19, 9)  # no upper bound hit
    assert Spin(200, total_sz=0).n_states == comb(200, 100)


def test_too_large_to_enumerate():
    with pytest.raises(ValueError, match="int64"):
        Spin(80).all_states()
    with pytest.raises(ValueError, match="int64"):
        Spin(80).states_to_indices(np.ones((1, 80), np.int8))


def test_hashable_and_equal():
    assert Spin(4, 1) == Spin(4, 1.0) and hash(Spin(4, 1)) == hash(Spin(4, 1.0))
    assert Spin(4, total_sz=0) == Spin(4, total_sz=0.0)
    assert Spin(4) != Spin(4, total_sz=0)
    assert Spin(3, 1.5).two_s == 3
    assert Fock(3, 2, 1) == Fock(3, 2, n_particles=1)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        pytest.param(lambda: Spin(0), "n_sites", id="spin-no-sites"),
        pytest.param(lambda: Spin(2.5), "n_sites", id="spin-fractional-sites"),
        pytest.param(lambda: Spin(4, s=0.3), "half-integer", id="s-0.3"),
        pytest.param(lambda: Spin(4, s=0), "half-integer", id="s-0"),
        pytest.param(lambda: Spin(4, s=-0.5), "half-integer", id="s-negative"),
        pytest.param(lambda: Spin(3, total_sz=0), "total_sz", id="sz0-odd-chain"),
        pytest.param(lambda: Spin(4, total_sz=3), "total_sz", id="sz-too-large"),
        pytest.param(lambda: Spin(4, total_sz=-2.5), "total_sz", id="sz-too-small"),
        pytest.param(lambda: Spin(4, s=1, total_sz=0.5), "total_sz", id="sz-half"),
        pytest.param(lambda: Spin(4, total_sz=0.25), "total_sz", id="sz-quarter"),
        pytest.param(lambda: Fock(0, 2), "n_sites", id="fock-no-sites"),
        pytest.param(lambda: Fock(3, 0), "n_max", id="nmax-0"),
        pytest.param(lambda: Fock(3, 1.5), "n_max", id="nmax-fractional"),
        pytest.param(lambda: Fock(3, 2, n_particles=7), "n_particles", id="n-too-big"),
        pytest.param(
            lambda: Fock(3, 2, n_particles=-1), "n_particles", id="n-negative"
        ),
    ],
)
def test_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()
