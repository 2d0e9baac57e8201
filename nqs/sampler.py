"""Samplers of configurations from |psi(sigma)|^p: Markov-chain Metropolis, exact
i.i.d. draws, and the full sum over the basis.

The samplers are frozen dataclasses (static jit arguments) with the same interface::

    state = sampler.init(model, params, key)                    # SamplerState
    samples, state = sampler.sample(model, params, state)
    # samples: (n_chains, n_samples_per_chain, n_sites) int8
    weights = sample_weights(sampler, model, params, samples)
    # None (Monte Carlo: every sample weighs 1/n) or (n_chains, n_per_chain) float64

Per-sample weights are how estimators tell the two apart: Metropolis and exact draws
are Monte Carlo samples of |psi|^p (``weights = None``); :class:`FullSumSampler`
returns every basis state once and :func:`sample_weights` their Born probabilities
|psi|^2 / sum |psi|^2, which ``nqs.vstate`` and ``nqs.sr`` turn into exact sums.

``model`` is a Flax module, ``params`` the variables pytree passed to ``model.apply``
as is (what ``model.init`` returns), mapping (batch, n_sites) int8 configurations to
(batch,) log-amplitudes, real or complex.

Jitting: ``init`` and ``sample`` call the module-level functions :func:`init` and
:func:`sample`, which are ``jax.jit`` compiled with the sampler and the model static
(both hashable). Equal samplers and models therefore share one compiled function per
shape of ``params`` and state; called inside another jitted function (a driver step)
the inner jit is simply inlined.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nqs.rules import has_draws

# Metropolis moves unrolled per iteration of the move loop (XLA overhead per iteration)
SWEEP_UNROLL = 4
# Moves x chains up to which one ``sample`` call draws all its random numbers at once
# (a few MB); larger calls draw them sweep by sweep.
PREDRAW_MAX = 2**20


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SamplerState:
    """State of the chains (or of the exact sampler's PRNG stream).

    Attributes:
        sigma: (n_chains, n_sites) int8 current configurations.
        log_prob: (n_chains,) float64, p * Re log psi(sigma) (unnormalised).
        key: PRNG key owned by the sampler; split before use, never reused.
        n_accepted: (n_chains,) int64 accepted moves during the last ``sample`` call.
        n_proposed: () int64 moves proposed per chain during the last ``sample`` call
            (discarded sweeps included).
    """

    sigma: jax.Array
    log_prob: jax.Array
    key: jax.Array
    n_accepted: jax.Array
    n_proposed: jax.Array


def acceptance(state: SamplerState) -> jax.Array:
    """Fraction of accepted Metropolis moves over all chains in the last ``sample``.

    Returns:
        () float64 in [0, 1] (nan before the first ``sample`` call).
    """
    n_chains = state.n_accepted.shape[0]
    return jnp.sum(state.n_accepted) / (n_chains * state.n_proposed)


def _log_prob(model, params, sigma: jax.Array, power: float) -> jax.Array:
    """p * Re log psi(sigma) for (n, n_sites) configurations -> (n,) float."""
    return power * jnp.real(model.apply(params, sigma))


@dataclasses.dataclass(frozen=True)
class MetropolisSampler:
    """Metropolis-Hastings chains sampling |psi(sigma)|^p.

    One sweep is ``sweep_size`` proposals per chain; a move sigma -> sigma' is accepted
    with probability min(1, exp(p Re[log psi(sigma') - log psi(sigma)] + log_q_ratio)).
    ``sample`` runs ``n_discard_per_chain`` sweeps for thermalisation, then records the
    configuration after each of ``n_samples_per_chain`` sweeps. It first recomputes
    log_prob of the current configurations with the given params, so a state carried
    over a parameter update is valid. The random numbers of the moves (proposals and
    acceptance uniforms) are drawn in bulk before the move loop: for the whole call
    when it has at most ``PREDRAW_MAX`` moves x chains, else sweep by sweep; rules
    with ``draw``/``apply`` (see ``nqs.rules``) draw vectorised, others get one key
    per move.

    Attributes:
        hilbert: ``nqs.hilbert`` space; chains start from ``hilbert.random_states``.
        rule: transition rule (see ``nqs.rules``).
        n_chains: number of parallel chains.
        n_samples: requested total samples, rounded up to a multiple of n_chains.
        n_discard_per_chain: sweeps discarded at the start of every ``sample`` call.
        sweep_size: proposals per sweep; None means ``hilbert.n_sites``.
        power: p, sample |psi|^p (2 for Born probabilities).
    """

    hilbert: Any
    rule: Any
    n_chains: int = 16
    n_samples: int = 1024
    n_discard_per_chain: int = 16
    sweep_size: int | None = None
    power: float = 2.0

    def __post_init__(self):
        for name in ("n_chains", "n_samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.n_discard_per_chain) < 0:
            raise ValueError(
                f"n_discard_per_chain must be >= 0, got {self.n_discard_per_chain}"
            )
        if self.sweep_size is not None and int(self.sweep_size) < 1:
            raise ValueError(f"sweep_size must be >= 1 or None, got {self.sweep_size}")

    @property
    def n_samples_per_chain(self) -> int:
        """ceil(n_samples / n_chains)."""
        return math.ceil(self.n_samples / self.n_chains)

    @property
    def n_sweep(self) -> int:
        """Proposals per chain per sweep."""
        return self.hilbert.n_sites if self.sweep_size is None else self.sweep_size

    def init(self, model, params, key: jax.Array) -> SamplerState:
        """Start the chains from uniformly random valid configurations."""
        return init(self, model, params, key)

    def sample(self, model, params, state: SamplerState):
        """Draw (n_chains, n_samples_per_chain, n_sites) int8 samples; new state."""
        return sample(self, model, params, state)

    def _init(self, model, params, key):
        key, k_init = jax.random.split(key)
        sigma = self.hilbert.random_states(k_init, self.n_chains).astype(jnp.int8)
        log_prob = _log_prob(model, params, sigma, self.power)
        return SamplerState(
            sigma=sigma,
            log_prob=log_prob,
            key=key,
            n_accepted=jnp.zeros(self.n_chains, dtype=jnp.int64),
            n_proposed=jnp.zeros((), dtype=jnp.int64),
        )

    def _sample(self, model, params, state):
        n_sweeps = self.n_discard_per_chain + self.n_samples_per_chain
        n_chains = state.sigma.shape[0]
        drawn = has_draws(self.rule)

        def move(carry, xs):
            sigma, log_prob, n_acc = carry
            prop, log_u = xs
            if drawn:
                sigma_p, log_q_ratio = self.rule.apply(prop, sigma)
            else:
                sigma_p, log_q_ratio = self.rule.propose(prop, sigma)
            log_prob_p = _log_prob(model, params, sigma_p, self.power)
            log_ratio = log_prob_p - log_prob + log_q_ratio
            accept = log_u < log_ratio  # False for nan ratios
            sigma = jnp.where(accept[:, None], sigma_p, sigma)
            log_prob = jnp.where(accept, log_prob_p, log_prob)
            return (sigma, log_prob, n_acc + accept.astype(n_acc.dtype)), None

        def draws(key, n_sweeps_drawn):
            """Proposal randomness and log-uniforms, (n_sweeps_drawn, n_sweep, ...)."""
            k_prop, k_acc = jax.random.split(key)
            shape = (n_sweeps_drawn, self.n_sweep, n_chains)
            log_u = jnp.log(jax.random.uniform(k_acc, shape, dtype=log_prob.dtype))
            if not drawn:
                return jax.random.split(k_prop, shape[:2]), log_u
            n_moves = n_sweeps_drawn * self.n_sweep
            prop = self.rule.draw(k_prop, n_moves, n_chains)
            prop = jax.tree_util.tree_map(
                lambda x: x.reshape(shape[:2] + x.shape[1:]), prop
            )
            return prop, log_u

        def sweep(carry, xs):
            if not predrawn:  # xs is the sweep's key: draw its randomness in bulk
                xs = jax.tree_util.tree_map(lambda x: x[0], draws(xs, 1))
            unroll = min(SWEEP_UNROLL, self.n_sweep)
            carry, _ = jax.lax.scan(move, carry, xs, unroll=unroll)
            return carry, carry[0]

        key, k_run = jax.random.split(state.key)
        # params may have changed since the state was made: refresh log|psi|^p
        log_prob = _log_prob(model, params, state.sigma, self.power)
        # int32 in the loop (at most n_sweeps * n_sweep per call), int64 in the state
        n_acc = jnp.zeros(n_chains, dtype=jnp.int32)
        # the randomness of the whole call at once if small, else one draw per sweep
        predrawn = n_sweeps * self.n_sweep * n_chains <= PREDRAW_MAX
        xs = draws(k_run, n_sweeps) if predrawn else jax.random.split(k_run, n_sweeps)
        carry, sigmas = jax.lax.scan(sweep, (state.sigma, log_prob, n_acc), xs)
        sigma, log_prob, n_acc = carry
        samples = jnp.swapaxes(sigmas[self.n_discard_per_chain :], 0, 1)
        new = SamplerState(
            sigma=sigma,
            log_prob=log_prob,
            key=key,
            n_accepted=n_acc.astype(state.n_accepted.dtype),
            n_proposed=jnp.asarray(n_sweeps * self.n_sweep, dtype=jnp.int64),
        )
        return samples, new


@dataclasses.dataclass(frozen=True)
class ExactSampler:
    """Independent draws from |psi|^p / sum |psi|^p by enumerating the whole space.

    Costs one evaluation of the model on ``hilbert.all_states()`` per ``sample``; only
    for small spaces. The samples have the Metropolis layout
    (n_chains, n_samples_per_chain, n_sites) but every entry is an independent draw,
    so statistics over chains treat them correctly (tau_corr ~ 0, R-hat ~ 1).
    ``acceptance`` reports 1.

    Attributes:
        hilbert: ``nqs.hilbert`` space with ``all_states()``.
        n_samples: requested total samples, rounded up to a multiple of n_chains.
        power: p, sample |psi|^p.
        n_chains: number of rows of the sample array (no chains actually run).
    """

    hilbert: Any
    n_samples: int = 1024
    power: float = 2.0
    n_chains: int = 16

    @property
    def n_samples_per_chain(self) -> int:
        """ceil(n_samples / n_chains)."""
        return math.ceil(self.n_samples / self.n_chains)

    def init(self, model, params, key: jax.Array) -> SamplerState:
        """State holding the PRNG key (and one random configuration per row)."""
        return init(self, model, params, key)

    def sample(self, model, params, state: SamplerState):
        """Draw (n_chains, n_samples_per_chain, n_sites) int8 i.i.d. samples."""
        return sample(self, model, params, state)

    def _states(self) -> jax.Array:
        return jnp.asarray(np.asarray(self.hilbert.all_states(), dtype=np.int8))

    def _init(self, model, params, key):
        key, k_init = jax.random.split(key)
        sigma = self.hilbert.random_states(k_init, self.n_chains).astype(jnp.int8)
        return SamplerState(
            sigma=sigma,
            log_prob=_log_prob(model, params, sigma, self.power),
            key=key,
            n_accepted=jnp.zeros(self.n_chains, dtype=jnp.int64),
            n_proposed=jnp.zeros((), dtype=jnp.int64),
        )

    def _sample(self, model, params, state):
        states = self._states()
        logits = _log_prob(model, params, states, self.power)
        key, k_draw = jax.random.split(state.key)
        shape = (self.n_chains, self.n_samples_per_chain)
        idx = jax.random.categorical(k_draw, logits, shape=shape)
        samples = states[idx]
        n_per = self.n_samples_per_chain
        new = SamplerState(
            sigma=samples[:, -1],
            log_prob=logits[idx[:, -1]],
            key=key,
            n_accepted=jnp.full(self.n_chains, n_per, dtype=jnp.int64),
            n_proposed=jnp.asarray(n_per, dtype=jnp.int64),
        )
        return samples, new


@dataclasses.dataclass(frozen=True)
class FullSumSampler:
    """Every basis state once, for exact sums instead of Monte Carlo (small spaces).

    ``sample`` returns ``hilbert.all_states()`` in basis order as one "chain" of
    shape (1, n_states, n_sites); the estimators weigh the states by their Born
    probabilities (:func:`sample_weights`), so expectation values, gradients and S
    carry no sampling noise. The state holds only the PRNG key (unused) and
    counters; ``acceptance`` reports 1 after a ``sample`` call.

    Attributes:
        hilbert: ``nqs.hilbert`` space with ``all_states()``.
    """

    hilbert: Any

    @property
    def n_chains(self) -> int:
        """1: the basis is one block of samples."""
        return 1

    @property
    def n_samples_per_chain(self) -> int:
        """The number of basis states."""
        return int(self.hilbert.n_states)

    @property
    def n_samples(self) -> int:
        """The number of basis states."""
        return self.n_samples_per_chain

    def init(self, model, params, key: jax.Array) -> SamplerState:
        """State holding the PRNG key and the first basis state."""
        return init(self, model, params, key)

    def sample(self, model, params, state: SamplerState):
        """The whole basis, (1, n_states, n_sites) int8 in basis order; new state."""
        return sample(self, model, params, state)

    def _states(self) -> jax.Array:
        return jnp.asarray(np.asarray(self.hilbert.all_states(), dtype=np.int8))

    def _init(self, model, params, key):
        sigma = self._states()[:1]
        return SamplerState(
            sigma=sigma,
            log_prob=_log_prob(model, params, sigma, 2.0),
            key=key,
            n_accepted=jnp.zeros(1, dtype=jnp.int64),
            n_proposed=jnp.zeros((), dtype=jnp.int64),
        )

    def _sample(self, model, params, state):
        states = self._states()
        new = SamplerState(
            sigma=states[:1],
            log_prob=_log_prob(model, params, states[:1], 2.0),
            key=state.key,
            n_accepted=jnp.ones(1, dtype=jnp.int64),
            n_proposed=jnp.ones((), dtype=jnp.int64),
        )
        return states[None], new


def sample_weights(sampler, model, params, samples: jax.Array) -> jax.Array | None:
    """Per-sample weights of the estimators: None for Monte Carlo samples.

    For :class:`FullSumSampler` samples (the whole basis) the Born probabilities
    w(sigma) = |psi(sigma)|^2 / sum |psi|^2 = softmax(2 Re log psi), exactly 0 where
    psi = 0; for any other sampler None, meaning equal weights 1/n. The choice is
    made in Python from the sampler's type, so a Monte Carlo step compiles without
    any weights.

    Args:
        sampler: the sampler that drew ``samples``.
        model: Flax module; apply maps (b, n_sites) int8 to (b,) log psi.
        params: variables pytree of ``model``.
        samples: (n_chains, n_samples_per_chain, n_sites) int8, what
            ``sampler.sample`` returned.
    Returns:
        (n_chains, n_samples_per_chain) float64 summing to one (i.e. (1, n_states)),
        or None.
    """
    if not isinstance(sampler, FullSumSampler):
        return None
    return _born_weights(model, params, samples)


@functools.partial(jax.jit, static_argnums=0)
def _born_weights(model, params, samples: jax.Array) -> jax.Array:
    log_psi = model.apply(params, samples.reshape(-1, samples.shape[-1]))
    return jax.nn.softmax(2.0 * jnp.real(log_psi)).reshape(samples.shape[:-1])


@functools.partial(jax.jit, static_argnums=(0, 1))
def init(sampler, model, params, key: jax.Array) -> SamplerState:
    """Jitted ``sampler.init(model, params, key)`` (sampler and model static)."""
    return sampler._init(model, params, key)


@functools.partial(jax.jit, static_argnums=(0, 1))
def sample(sampler, model, params, state: SamplerState):
    """Jitted ``sampler.sample(model, params, state)`` (sampler and model static).

    Returns:
        samples (n_chains, n_samples_per_chain, n_sites) int8 and the new state.
    """
    return sampler._sample(model, params, state)
