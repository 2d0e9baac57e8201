"""Samplers and transition rules: chi^2 of histograms against |psi|^p by enumeration."""

import dataclasses
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import nqs.sampler
from nqs.hilbert import Fock, Spin
from nqs.operator import sigma_x, spin_minus, spin_plus
from nqs.rules import ExchangeRule, HamiltonianRule, HopRule, LocalRule
from nqs.sampler import ExactSampler, MetropolisSampler, acceptance

P_MIN = 1e-3  # chi^2 significance; a fixed seed makes every test deterministic
TRACES = {"n": 0}


class TinyRBM(nn.Module):
    """log psi = sum_j log cosh(W sigma + b)_j + a . sigma, random real parameters."""

    scale: float = 0.3

    @nn.compact
    def __call__(self, sigma):
        x = sigma.astype(jnp.float64)
        init = nn.initializers.normal(self.scale)
        h = nn.Dense(
            x.shape[-1], param_dtype=jnp.float64, kernel_init=init, bias_init=init
        )(x)
        a = self.param("a", init, (x.shape[-1],), jnp.float64)
        return jnp.sum(jnp.log(jnp.cosh(h)), axis=-1) + x @ a


class Flat(nn.Module):
    """Constant log psi; every Metropolis move with a symmetric rule is accepted."""

    @nn.compact
    def __call__(self, sigma):
        TRACES["n"] += 1
        c = self.param("c", nn.initializers.zeros, (), jnp.float64)
        return c * jnp.sum(sigma, axis=-1) + 0.0


def _model(hilbert, seed=0, scale=0.4):
    unit = np.std(hilbert.local_values) * np.sqrt(hilbert.n_sites)
    model = TinyRBM(scale / unit)
    params = model.init(jax.random.key(seed), jnp.ones((1, hilbert.n_sites), jnp.int8))
    return model, params


def _born(model, params, hilbert, power=2.0):
    log_psi = np.asarray(model.apply(params, jnp.asarray(hilbert.all_states())))
    w = np.exp(power * (log_psi.real - log_psi.real.max()))
    return w / w.sum()


def _indices(hilbert, sigma):
    """Row of each configuration in hilbert.all_states(), by dictionary lookup."""
    table = {row.tobytes(): k for k, row in enumerate(hilbert.all_states())}
    flat = np.asarray(sigma, dtype=np.int8).reshape(-1, hilbert.n_sites)
    idx = np.array([table.get(row.tobytes(), -1) for row in flat])
    assert np.all(idx >= 0), "a configuration left the Hilbert space"
    return idx


def _chi2_pvalue(samples, probs, hilbert):
    """p-value of Pearson's chi^2; bins with expected count < 5 are merged."""
    idx = _indices(hilbert, samples)
    counts = np.bincount(idx, minlength=probs.size).astype(float)
    expected = probs * idx.size
    order = np.argsort(expected)
    expected, counts = expected[order], counts[order]
    n_small = int(np.searchsorted(np.cumsum(expected), 5.0)) + 1
    n_small = max(n_small, int(np.sum(expected < 5)))
    exp_b = np.concatenate([[expected[:n_small].sum()], expected[n_small:]])
    obs_b = np.concatenate([[counts[:n_small].sum()], counts[n_small:]])
    assert exp_b.size >= 10
    return scipy.stats.chisquare(obs_b, exp_b).pvalue


def _hamiltonian_rule_op(hilbert):
    """Hopping on an open chain plus a transverse field on sites 0 and 1.

    Rows have 2 + (number of anti-aligned bonds) connections, so the proposal is
    asymmetric and the log_q_ratio correction matters.
    """
    n = hilbert.n_sites
    op = 0.7 * sigma_x(hilbert, 0) + 0.7 * sigma_x(hilbert, 1)
    for i in range(n - 1):
        op = op + spin_plus(hilbert, i) @ spin_minus(hilbert, i + 1)
        op = op + spin_minus(hilbert, i) @ spin_plus(hilbert, i + 1)
    return op


def _chain(n):
    return tuple((i, (i + 1) % n) for i in range(n))


def _metropolis_samples(hilbert, rule, model, params, power=2.0, seed=1, thin=10):
    """3000 samples: 1000 chains, 3 thin sweeps discarded, then 3 samples thin apart.

    The thinning makes the samples nearly independent, as Pearson's chi^2 assumes
    (checked over several seeds: p-values spread over (0, 1)).
    """
    sampler = MetropolisSampler(
        hilbert,
        rule,
        n_chains=1000,
        n_samples=1000 * (2 * thin + 1),
        n_discard_per_chain=3 * thin,
        power=power,
    )
    state = sampler.init(model, params, jax.random.key(seed))
    samples, state = sampler.sample(model, params, state)
    return samples[:, ::thin], state


def _case(name):
    if name == "local-spin-half":
        hi = Spin(6)
        return hi, LocalRule(hi)
    if name == "local-spin-one":
        hi = Spin(4, s=1)
        return hi, LocalRule(hi)
    if name == "local-fock":
        hi = Fock(4, n_max=2)
        return hi, LocalRule(hi)
    if name == "exchange-spin-sz0":
        hi = Spin(8, total_sz=0)
        return hi, ExchangeRule(_chain(8))
    if name == "exchange-fock-hardcore":
        hi = Fock(8, n_max=1, n_particles=3)
        return hi, ExchangeRule(_chain(8))
    if name == "exchange-fock-n":
        hi = Fock(5, n_max=2, n_particles=4)
        return hi, ExchangeRule(_chain(5))
    if name == "hop-fock-n":
        hi = Fock(5, n_max=2, n_particles=4)
        return hi, HopRule(hi, _chain(5))
    if name == "hamiltonian-spin-half":
        hi = Spin(6)
        return hi, HamiltonianRule(_hamiltonian_rule_op(hi))
    raise KeyError(name)


CASES = [
    "local-spin-half",
    "local-spin-one",
    "local-fock",
    "exchange-spin-sz0",
    "exchange-fock-hardcore",
    "hop-fock-n",
    "hamiltonian-spin-half",
]
# exchange only permutes occupations: valid but not ergodic in a Fock sector, n_max > 1
VALID_CASES = CASES + ["exchange-fock-n"]


@pytest.mark.parametrize("name", CASES)
def test_metropolis_matches_born_distribution(name):
    hilbert, rule = _case(name)
    model, params = _model(hilbert)
    # the field acts on two sites only: magnetisation diffuses slowly, thin more
    thin = 30 if name.startswith("hamiltonian") else 10
    samples, state = _metropolis_samples(hilbert, rule, model, params, thin=thin)
    assert samples.dtype == jnp.int8
    assert 0.05 < float(acceptance(state)) <= 1.0
    p = _chi2_pvalue(samples, _born(model, params, hilbert), hilbert)
    assert p > P_MIN, f"chi^2 p-value {p:.2e}"


def test_metropolis_power_one_matches_abs_psi():
    hilbert = Spin(6)
    model, params = _model(hilbert, scale=0.5)
    samples, _ = _metropolis_samples(hilbert, LocalRule(hilbert), model, params, 1.0)
    p1 = _chi2_pvalue(samples, _born(model, params, hilbert, power=1.0), hilbert)
    p2 = _chi2_pvalue(samples, _born(model, params, hilbert, power=2.0), hilbert)
    assert p1 > P_MIN
    assert p2 < P_MIN  # the test can tell |psi| from |psi|^2


@pytest.mark.parametrize("power", [2.0, 1.0], ids=["p2", "p1"])
def test_exact_sampler_matches_born_distribution(power):
    hilbert = Spin(8, total_sz=0)
    model, params = _model(hilbert, scale=0.5)
    sampler = ExactSampler(hilbert, n_samples=8000, power=power, n_chains=8)
    state = sampler.init(model, params, jax.random.key(3))
    samples, state = sampler.sample(model, params, state)
    assert samples.shape == (8, 1000, 8)
    assert float(acceptance(state)) == 1.0
    p = _chi2_pvalue(samples, _born(model, params, hilbert, power), hilbert)
    assert p > P_MIN
    samples2, _ = sampler.sample(model, params, state)
    assert not np.array_equal(samples, samples2)  # the key advances


def test_hamiltonian_rule_log_q_ratio_counts_connections():
    hilbert = Spin(5)
    rule = HamiltonianRule(_hamiltonian_rule_op(hilbert))
    states = hilbert.all_states()
    # independent count of off-diagonal connections: 2 field flips + anti-aligned bonds
    n_conn = 2 + np.sum(states[:, 1:] != states[:, :-1], axis=1)
    sigma = jnp.asarray(np.repeat(states, 20, axis=0))
    sigma_p, log_q = jax.jit(rule.propose)(jax.random.key(0), sigma)
    i, j = _indices(hilbert, sigma), _indices(hilbert, sigma_p)
    assert np.all(i != j)
    np.testing.assert_allclose(log_q, np.log(n_conn[i]) - np.log(n_conn[j]), atol=1e-12)
    # each proposal differs by one field flip on site 0/1 or by one bond exchange
    diff = np.asarray(sigma_p) != np.asarray(sigma)
    flip01 = (diff.sum(1) == 1) & (diff[:, 0] | diff[:, 1])
    swap = (diff.sum(1) == 2) & np.any(diff[:, 1:] & diff[:, :-1], axis=1)
    assert np.all(flip01 | swap)


@dataclasses.dataclass(frozen=True)
class ProposeOnly:
    """A user rule with ``propose`` only: the sampler draws one key per move."""

    rule: object

    def propose(self, key, sigma):
        return self.rule.propose(key, sigma)


@pytest.mark.parametrize("name", ["local-spin-one", "hamiltonian-spin-half"])
def test_metropolis_with_propose_only_rule_matches_born(name):
    hilbert, rule = _case(name)
    model, params = _model(hilbert, seed=1)
    thin = 30 if name.startswith("hamiltonian") else 10
    samples, state = _metropolis_samples(
        hilbert, ProposeOnly(rule), model, params, seed=2, thin=thin
    )
    assert 0.05 < float(acceptance(state)) <= 1.0
    p = _chi2_pvalue(samples, _born(model, params, hilbert), hilbert)
    assert p > P_MIN, f"chi^2 p-value {p:.2e}"


@pytest.mark.parametrize(
    "name,wrap", [("local-spin-one", False), ("exchange-spin-sz0", True)]
)
def test_metropolis_drawing_sweep_by_sweep_matches_born(name, wrap, monkeypatch):
    """Calls too large to pre-draw all their randomness draw it once per sweep."""
    hilbert, rule = _case(name)
    model, params = _model(hilbert, seed=3)
    monkeypatch.setattr(nqs.sampler, "PREDRAW_MAX", 0)
    nqs.sampler.sample.clear_cache()  # retrace with the patched threshold
    try:
        rule = ProposeOnly(rule) if wrap else rule
        samples, _ = _metropolis_samples(hilbert, rule, model, params, seed=4)
    finally:
        nqs.sampler.sample.clear_cache()
    p = _chi2_pvalue(samples, _born(model, params, hilbert), hilbert)
    assert p > P_MIN, f"chi^2 p-value {p:.2e}"


@pytest.mark.parametrize("name", VALID_CASES)
def test_rule_draws_match_propose(name):
    """apply(draw(key, 1, n)[0]) is propose(key); draws over moves differ."""
    hilbert, rule = _case(name)
    sigma = hilbert.random_states(jax.random.key(0), 64)
    key = jax.random.key(3)
    draws = rule.draw(key, 5, 64)
    for leaf in jax.tree_util.tree_leaves(draws):
        assert leaf.shape[:2] == (5, 64)
    first = jax.tree_util.tree_map(lambda x: x[0], draws)
    np.testing.assert_array_equal(
        rule.apply(first, sigma)[0], rule.propose(key, sigma)[0]
    )
    leaves = jax.tree_util.tree_leaves(draws)
    assert any(not np.array_equal(x[0], x[1]) for x in leaves)


@pytest.mark.parametrize("name", VALID_CASES)
def test_rules_keep_configurations_valid(name):
    hilbert, rule = _case(name)
    sigma = hilbert.random_states(jax.random.key(0), 256)
    propose = jax.jit(rule.propose)
    for k in jax.random.split(jax.random.key(1), 20):
        sigma, log_q = propose(k, sigma)
        assert sigma.dtype == jnp.int8 and sigma.shape == (256, hilbert.n_sites)
        assert log_q.shape == (256,)
        assert bool(jnp.all(hilbert.is_valid(sigma)))


def test_hop_rule_moves_one_particle_between_edge_ends():
    hilbert = Fock(4, n_max=2, n_particles=4)
    rule = HopRule(hilbert, ((0, 1), (2, 3)))
    sigma = hilbert.random_states(jax.random.key(0), 2000)
    sigma_p, _ = jax.jit(rule.propose)(jax.random.key(1), sigma)
    delta = np.asarray(sigma_p, int) - np.asarray(sigma, int)
    moved = np.any(delta != 0, axis=1)
    assert moved.mean() > 0.3
    d = delta[moved]
    assert np.all(np.sort(d, axis=1)[:, [0, -1]] == [-1, 1])
    assert np.all(np.abs(d).sum(1) == 2)
    pairs = (np.abs(d[:, [0, 1]]).sum(1) == 2) | (np.abs(d[:, [2, 3]]).sum(1) == 2)
    assert np.all(pairs)


def test_local_rule_refuses_constrained_space():
    with pytest.raises(ValueError, match="ExchangeRule or HopRule"):
        LocalRule(Spin(4, total_sz=0))
    with pytest.raises(ValueError, match="ExchangeRule or HopRule"):
        LocalRule(Fock(4, n_max=2, n_particles=2))


def test_shapes_counters_and_flat_acceptance():
    hilbert = Spin(5)
    model = Flat()
    params = model.init(jax.random.key(0), jnp.ones((1, 5), jnp.int8))
    sampler = MetropolisSampler(
        hilbert,
        LocalRule(hilbert),
        n_chains=3,
        n_samples=10,
        n_discard_per_chain=2,
        sweep_size=7,
    )
    assert sampler.n_samples_per_chain == 4
    state = sampler.init(model, params, jax.random.key(1))
    samples, state = sampler.sample(model, params, state)
    assert samples.shape == (3, 4, 5) and samples.dtype == jnp.int8
    assert int(state.n_proposed) == (2 + 4) * 7
    assert float(acceptance(state)) == 1.0  # flat |psi|: every move accepted
    np.testing.assert_array_equal(state.sigma, samples[:, -1])


def test_sample_compiles_once_per_shape():
    hilbert = Spin(5)
    model = Flat()
    params = model.init(jax.random.key(0), jnp.ones((1, 5), jnp.int8))
    sampler = MetropolisSampler(hilbert, LocalRule(hilbert), n_chains=4, n_samples=8)
    state = sampler.init(model, params, jax.random.key(1))
    _, state = sampler.sample(model, params, state)
    n = TRACES["n"]
    params = jax.tree_util.tree_map(lambda x: x + 0.1, params)
    samples, state = sampler.sample(model, params, state)
    same = MetropolisSampler(hilbert, LocalRule(hilbert), n_chains=4, n_samples=8)
    _, state = same.sample(model, params, state)  # an equal sampler shares the cache
    assert TRACES["n"] == n


def test_sample_refreshes_log_prob_after_parameter_change():
    hilbert = Spin(6)
    model, params = _model(hilbert)
    sampler = MetropolisSampler(
        hilbert,
        LocalRule(hilbert),
        n_chains=64,
        n_samples=64,
        n_discard_per_chain=0,
        sweep_size=1,
    )
    state = sampler.init(model, params, jax.random.key(0))
    new_params = jax.tree_util.tree_map(lambda x: -3 * x, params)
    _, state = sampler.sample(model, new_params, state)
    assert 0 < int(jnp.sum(state.n_accepted)) < 64  # some chains kept their sigma
    log_psi = model.apply(new_params, state.sigma)
    np.testing.assert_allclose(state.log_prob, 2 * log_psi, rtol=1e-12)


# -- full sum ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hilbert",
    [Spin(6), Spin(6, total_sz=0), Spin(3, s=1.0, total_sz=1.0), Fock(4, 2, 3)],
    ids=["spin-6", "spin-6-sz0", "spin-one-sz1", "fock-4-n3"],
)
def test_full_sum_sampler_returns_every_basis_state_once(hilbert):
    model, params = _model(hilbert)
    sampler = nqs.sampler.FullSumSampler(hilbert)
    assert sampler.n_chains == 1 and sampler.n_samples_per_chain == hilbert.n_states
    state = sampler.init(model, params, jax.random.key(0))
    samples, state = sampler.sample(model, params, state)
    assert samples.shape == (1, hilbert.n_states, hilbert.n_sites)
    assert samples.dtype == jnp.int8
    np.testing.assert_array_equal(samples[0], hilbert.all_states())
    # independently: every product state of local values with the constraint, once
    values = np.asarray(hilbert.local_values)
    grid = np.array(list(itertools.product(values, repeat=hilbert.n_sites)))
    total = getattr(hilbert, "total_sz", None)
    if isinstance(hilbert, Fock):
        grid = grid[grid.sum(1) == hilbert.n_particles]
    elif total is not None:  # local values are 2 m: S^z = sum / 2
        grid = grid[np.isclose(grid.sum(1) / 2, total)]
    assert sorted(map(tuple, grid)) == sorted(map(tuple, np.asarray(samples[0])))
    assert float(acceptance(state)) == 1.0


def test_sample_weights_are_born_probabilities_for_the_full_sum_only():
    hilbert = Spin(7, total_sz=0.5)
    model, params = _model(hilbert, seed=2, scale=1.0)
    full = nqs.sampler.FullSumSampler(hilbert)
    samples, _ = full.sample(model, params, full.init(model, params, jax.random.key(0)))
    weights = nqs.sampler.sample_weights(full, model, params, samples)
    assert weights.shape == (1, hilbert.n_states) and weights.dtype == jnp.float64
    np.testing.assert_allclose(weights[0], _born(model, params, hilbert), rtol=1e-12)
    for other in (
        MetropolisSampler(hilbert, ExchangeRule(_chain(7)), n_chains=2, n_samples=4),
        ExactSampler(hilbert, n_samples=4, n_chains=2),
    ):
        state = other.init(model, params, jax.random.key(1))
        mc, _ = other.sample(model, params, state)
        assert nqs.sampler.sample_weights(other, model, params, mc) is None


def test_sample_weights_vanish_exactly_where_psi_does():
    from nqs.models import LogStateVector

    hilbert = Spin(5)
    model = LogStateVector(hilbert)
    theta = np.linspace(-2.0, 3.0, hilbert.n_states)  # a large spread of |psi|^2
    theta[[0, 7, 31]] = -np.inf
    params = {"params": {"theta": jnp.asarray(theta)}}
    full = nqs.sampler.FullSumSampler(hilbert)
    samples, _ = full.sample(model, params, full.init(model, params, jax.random.key(0)))
    weights = np.asarray(nqs.sampler.sample_weights(full, model, params, samples))[0]
    psi2 = np.exp(2 * theta)
    np.testing.assert_allclose(weights, psi2 / psi2.sum(), rtol=1e-12)
    assert np.all(weights[[0, 7, 31]] == 0) and weights.sum() == pytest.approx(1.0)
