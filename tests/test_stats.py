"""Monte Carlo statistics against processes with known autocorrelation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nqs.stats import Stats, statistics

N_REPS = 400
N_CHAINS = 16
N_STEPS = 1000


def ar1(rng, phi, shape, n_steps):
    """Stationary AR(1): x_t = phi x_{t-1} + sqrt(1 - phi^2) eps_t, unit variance."""
    x = np.empty(shape + (n_steps,))
    x[..., 0] = rng.standard_normal(shape)
    noise = rng.standard_normal(shape + (n_steps,)) * np.sqrt(1 - phi**2)
    for t in range(1, n_steps):
        x[..., t] = phi * x[..., t - 1] + noise[..., t]
    return x


batched_statistics = jax.jit(jax.vmap(statistics))


@pytest.mark.parametrize(
    "phi, n_steps, n_reps, bias_tol",
    [(0.5, N_STEPS, N_REPS, 0.03), (0.9, N_STEPS, N_REPS, 0.03), (0.5, 64, 1000, 0.1)],
    ids=["phi=0.5", "phi=0.9", "phi=0.5-short"],
)
def test_ar1_error_and_tau(phi, n_steps, n_reps, bias_tol):
    rng = np.random.default_rng(17 + int(100 * phi) + n_steps)
    x = ar1(rng, phi, (n_reps, N_CHAINS), n_steps)
    st = batched_statistics(jnp.asarray(x))
    means = np.asarray(st.mean)
    # The true mean is 0: the empirical rms of the means over n_reps independent
    # repetitions has relative standard deviation 1/sqrt(2 n_reps) (3.5 % for 400).
    empirical = np.sqrt(np.mean(means**2))
    reported = np.sqrt(np.mean(np.asarray(st.error) ** 2))
    tol = 3.0 / np.sqrt(2 * n_reps)
    assert abs(reported / empirical - 1) < tol, (reported, empirical)
    # Exact error of the mean of a stationary AR(1) (finite-length formula) agrees
    # with the reported error up to the estimator's bias (window, 1/n normalisation,
    # centring), of order tau / n_steps: 3 % for long chains, more for short ones.
    n = n_steps
    k = np.arange(1, n)
    var_chain_mean = (1 + 2 * np.sum((1 - k / n) * phi**k)) / n
    exact = np.sqrt(var_chain_mean / N_CHAINS)
    assert abs(reported / exact - 1) < bias_tol, (reported, exact)
    tau_true = phi / (1 - phi)
    assert abs(np.mean(st.tau_corr) / tau_true - 1) < 5 / 3 * bias_tol
    np.testing.assert_allclose(np.mean(st.variance), 1.0, rtol=0.02)
    # well-mixed chains: R-hat close to 1 in every repetition
    assert abs(np.mean(st.r_hat) - 1) < 0.05
    assert np.all(np.abs(np.asarray(st.r_hat) - 1) < 0.2)


def test_white_noise():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N_CHAINS, N_STEPS)) * 2.0 + 5.0
    st = statistics(jnp.asarray(x))
    np.testing.assert_allclose(st.mean, x.mean(), rtol=1e-12)
    np.testing.assert_allclose(st.variance, x.var(), rtol=1e-12)
    naive = np.sqrt(x.var() / x.size)
    # tau fluctuates around 0 by ~sqrt(2 W / N) ~ 0.02 for a window W ~ 3.
    assert 0 <= float(st.tau_corr) < 0.05
    np.testing.assert_allclose(st.error, naive, rtol=0.05)
    assert abs(float(st.r_hat) - 1) < 0.02


def test_stuck_chains_have_large_r_hat():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 500))
    x[:4] += 3.0  # half of the chains sit in another mode
    st = statistics(jnp.asarray(x))
    assert float(st.r_hat) > 1.1
    # Centring on the global mean shows the offsets as long-range correlation.
    assert float(st.error) > 3 * np.sqrt(x.var() / x.size)
    same = statistics(jnp.asarray(np.tile(x[4], (8, 1))))
    assert abs(float(same.r_hat) - 1) < 0.01


def test_r_hat_against_formula():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 11)) + np.arange(3)[:, None] * 0.3
    h = 5
    halves = np.concatenate([x[:, :h], x[:, -h:]])
    w = halves.var(axis=1, ddof=1).mean()
    b = h * halves.mean(axis=1).var(ddof=1)
    expected = np.sqrt(((h - 1) / h * w + b / h) / w)
    np.testing.assert_allclose(statistics(jnp.asarray(x)).r_hat, expected, rtol=1e-12)


def test_complex_ar1():
    """Real and imaginary parts with different tau: error^2 = E|mean - mu|^2."""
    rng = np.random.default_rng(6)
    re = ar1(rng, 0.8, (N_REPS, 4), 500)
    im = ar1(rng, 0.2, (N_REPS, 4), 500)
    z = jnp.asarray(re + 1j * im)
    st = batched_statistics(z)
    assert st.mean.dtype == jnp.complex128
    assert st.error.dtype == jnp.float64
    np.testing.assert_allclose(st.mean, z.mean(axis=(1, 2)), rtol=1e-12)
    empirical = np.sqrt(np.mean(np.abs(np.asarray(st.mean)) ** 2))
    reported = np.sqrt(np.mean(np.asarray(st.error) ** 2))
    # |mean|^2 sums two chi^2_1 variables of different size: relative std of the rms
    # is below 1/sqrt(2 N_REPS) * sqrt(2) = 5 %.
    assert abs(reported / empirical - 1) < 0.15, (reported, empirical)
    # tau of the sum: (var_re (1 + 2 tau_re) + var_im (1 + 2 tau_im)) / 2 = 1 + 2 tau
    one_plus_2tau = ((1 + 2 * 4.0) + (1 + 2 * 0.25)) / 2
    tau_expected = (one_plus_2tau - 1) / 2
    assert abs(np.mean(st.tau_corr) / tau_expected - 1) < 0.08


def test_one_sample_per_chain():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 1))
    st = statistics(jnp.asarray(x))
    np.testing.assert_allclose(st.error, np.sqrt(x.var() / 64), rtol=1e-12)
    assert float(st.tau_corr) == 0.0
    assert np.isnan(float(st.r_hat))


def test_constant_data():
    st = statistics(jnp.full((4, 32), -1.5))
    assert float(st.mean) == -1.5
    assert float(st.error) == 0.0
    assert float(st.tau_corr) == 0.0
    assert float(st.r_hat) == 1.0


def test_jit_compiles_once():
    n_traces = 0

    @jax.jit
    def f(x):
        nonlocal n_traces
        n_traces += 1
        return statistics(x)

    rng = np.random.default_rng(8)
    for _ in range(3):
        st = f(jnp.asarray(rng.standard_normal((4, 64))))
    assert isinstance(st, Stats)
    assert n_traces == 1


def test_bad_shape():
    with pytest.raises(ValueError, match="n_chains, n_per_chain"):
        statistics(jnp.zeros((2, 3, 4)))
