"""Metropolis transition rules: how a chain proposes its next configuration.

A rule is a frozen dataclass (hashable, a static jit argument) with one method::

    def propose(self, key, sigma) -> tuple[jax.Array, jax.Array]:
        # sigma:       (n_chains, n_sites) int8 current configurations
        # returns
        #   sigma_p: (n_chains, n_sites) int8 proposed configurations
        #   log_q_ratio: (n_chains,) float64,
        #       log q(sigma | sigma_p) - log q(sigma_p | sigma)

It must be vectorised over chains, jittable (no Python control flow on values), and keep
configurations inside the Hilbert space (including its sum constraint). The sampler
accepts with probability ``min(1, |psi(sigma_p) / psi(sigma)|^p exp(log_q_ratio))``,
so a rule whose proposal probability is symmetric returns zeros. To write your own rule,
define such a dataclass; for example a rule flipping two random spin-1/2 sites::

    @dataclasses.dataclass(frozen=True)
    class TwoFlipRule:
        n_sites: int

        def propose(self, key, sigma):
            n_chains = sigma.shape[0]
            sites = jax.vmap(
                lambda k: jax.random.choice(k, self.n_sites, (2,), replace=False)
            )(jax.random.split(key, n_chains))
            flip = jnp.zeros(sigma.shape, bool)
            flip = flip.at[jnp.arange(n_chains)[:, None], sites].set(True)
            return jnp.where(flip, -sigma, sigma), jnp.zeros(n_chains)

Optionally, a rule may split ``propose`` into a vectorised draw of its random numbers
and a deterministic update; the sampler then draws the randomness of a whole ``sample``
call (or, for large calls, of one sweep) at once instead of one PRNG call per move::

    def draw(self, key, n_moves, n_chains):
        # returns a pytree of arrays with leading axes (n_moves, n_chains)
    def apply(self, draws, sigma) -> tuple[jax.Array, jax.Array]:
        # draws: the pytree sliced at one move, leading axis (n_chains,)
        # returns (sigma_p, log_q_ratio) as propose does

The draws of different moves must be independent and ``apply`` must not use other
randomness, so that ``apply(draws[t], sigma)`` has the law of ``propose(key, sigma)``.
Rules without ``draw``/``apply`` get one key per move. The built-in rules define both
and implement ``propose`` as ``apply`` of a single draw (:func:`propose_from_draws`).
Updates use elementwise one-hot ``jnp.where`` selections instead of scatters (cheaper
for the small arrays of a move, as measured on CPU).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

# An off-diagonal matrix element counts as a connection when |mel| exceeds this.
MEL_TOLERANCE = 1e-12


def has_draws(rule) -> bool:
    """Whether ``rule`` defines the optional ``draw``/``apply`` pair."""
    return callable(getattr(rule, "draw", None)) and callable(
        getattr(rule, "apply", None)
    )


def propose_from_draws(rule, key: jax.Array, sigma: jax.Array):
    """``propose`` of a rule with ``draw``/``apply``: apply one move's draws.

    Returns:
        (n_chains, n_sites) int8 proposals and (n_chains,) float64 log_q_ratio.
    """
    draws = rule.draw(key, 1, sigma.shape[0])
    return rule.apply(jax.tree_util.tree_map(lambda x: x[0], draws), sigma)


def _one_hot(sigma: jax.Array, site: jax.Array) -> jax.Array:
    """(n_chains, n_sites) bool, True at column ``site[c]`` of row c."""
    return jnp.arange(sigma.shape[-1], dtype=jnp.int32) == site[:, None]


def _entry(sigma: jax.Array, mask: jax.Array) -> jax.Array:
    """(n_chains,) int32 entry of each row where the one-hot ``mask`` is True."""
    return jnp.sum(jnp.where(mask, sigma, 0), axis=-1, dtype=jnp.int32)


def _swap(sigma: jax.Array, at_i: jax.Array, at_j: jax.Array, new_i, new_j):
    """sigma with new_i written where at_i and new_j where at_j (one-hot masks)."""
    new_i = jnp.asarray(new_i, sigma.dtype)[:, None]
    new_j = jnp.asarray(new_j, sigma.dtype)[:, None]
    return jnp.where(at_i, new_i, jnp.where(at_j, new_j, sigma))


def _normalise_edges(edges) -> tuple[tuple[int, int], ...]:
    """Edges as a tuple of (i, j) int pairs; extra entries (edge order) are dropped."""
    out = tuple((int(e[0]), int(e[1])) for e in edges)
    if not out:
        raise ValueError("edges must contain at least one (i, j) pair")
    if any(i == j for i, j in out):
        raise ValueError("edges must join two different sites, got a self edge")
    return out


@dataclasses.dataclass(frozen=True)
class LocalRule:
    """Set one uniformly random site to a different local value, chosen uniformly.

    Symmetric (``log_q_ratio = 0``). Works for spin-s and Fock spaces without a sum
    constraint.

    Attributes:
        hilbert: ``nqs.hilbert.Spin`` or ``Fock`` space without constraint.
    """

    hilbert: Any

    def __post_init__(self):
        if self.hilbert.constraint_sum is not None:
            raise ValueError(
                "LocalRule changes the sum of the entries and would leave a "
                "constrained space (total_sz / n_particles); use ExchangeRule or "
                "HopRule instead"
            )
        if self.hilbert.local_size < 2:
            raise ValueError("LocalRule needs at least two local values per site")

    def draw(self, key: jax.Array, n_moves: int, n_chains: int):
        """(site, shift), each (n_moves, n_chains) int32; shift in 1..local_size-1."""
        shape = (n_moves, n_chains)
        d = self.hilbert.local_size
        k_site, k_shift = jax.random.split(key)
        site = jax.random.randint(k_site, shape, 0, self.hilbert.n_sites, jnp.int32)
        if d == 2:  # the only other value: no randomness needed
            return site, jnp.ones(shape, jnp.int32)
        return site, jax.random.randint(k_shift, shape, 1, d, jnp.int32)

    def apply(self, draws, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Proposals for one move's draws (n_chains,); see the module docstring."""
        site, shift = draws
        d = self.hilbert.local_size
        idx = self.hilbert.values_to_indices(sigma)
        new = self.hilbert.indices_to_values((idx + shift[:, None]) % d)
        sigma_p = jnp.where(_one_hot(sigma, site), new, sigma)
        return sigma_p, jnp.zeros(sigma.shape[0])

    def propose(self, key: jax.Array, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Propose new configurations; see the module docstring."""
        return propose_from_draws(self, key, sigma)


@dataclasses.dataclass(frozen=True)
class ExchangeRule:
    """Swap the entries at the two ends of a uniformly random edge.

    Symmetric (``log_q_ratio = 0``); keeps the sum of the entries (total Sz, particle
    number), so it suits constrained spaces. It only permutes the entries, so it is
    ergodic in a fixed-sum sector for spin-1/2 on a connected edge graph, but not for
    larger local spaces (a Fock sector with n_max > 1, spin >= 1): use HopRule there.

    Attributes:
        edges: tuple of (i, j) site pairs (a lattice's ``edges`` with an order entry are
            accepted; the order is dropped).
    """

    edges: tuple[tuple[int, int], ...]

    def __post_init__(self):
        object.__setattr__(self, "edges", _normalise_edges(self.edges))

    def draw(self, key: jax.Array, n_moves: int, n_chains: int) -> jax.Array:
        """(n_moves, n_chains, 2) int32 ends of uniformly random edges."""
        edges = jnp.asarray(self.edges, dtype=jnp.int32)  # (n_edges, 2)
        pick = jax.random.randint(key, (n_moves, n_chains), 0, len(self.edges))
        return edges[pick]

    def apply(self, draws, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Proposals for one move's (n_chains, 2) edge ends; see the module doc."""
        at_i, at_j = _one_hot(sigma, draws[:, 0]), _one_hot(sigma, draws[:, 1])
        sigma_p = _swap(sigma, at_i, at_j, _entry(sigma, at_j), _entry(sigma, at_i))
        return sigma_p, jnp.zeros(sigma.shape[0])

    def propose(self, key: jax.Array, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Propose new configurations; see the module docstring."""
        return propose_from_draws(self, key, sigma)


@dataclasses.dataclass(frozen=True)
class HopRule:
    """Move one quantum (one boson, or one unit of Sz) along a random directed edge.

    A uniformly random edge and direction (i -> j) are drawn; the local index at i is
    lowered by one and at j raised by one if that stays within ``0..local_size-1``,
    otherwise the chain proposes its current configuration. The reverse move (j -> i on
    the same edge) is always allowed and has the same probability 1 / (2 n_edges), so
    the rule is symmetric (``log_q_ratio = 0``). Keeps the sum of the entries.

    Attributes:
        hilbert: ``nqs.hilbert.Fock`` (or ``Spin``) space.
        edges: tuple of (i, j) site pairs.
    """

    hilbert: Any
    edges: tuple[tuple[int, int], ...]

    def __post_init__(self):
        object.__setattr__(self, "edges", _normalise_edges(self.edges))

    def draw(self, key: jax.Array, n_moves: int, n_chains: int) -> jax.Array:
        """(n_moves, n_chains, 2) int32 (source, destination) of random edges."""
        shape = (n_moves, n_chains)
        edges = jnp.asarray(self.edges, dtype=jnp.int32)
        k_edge, k_dir = jax.random.split(key)
        ends = edges[jax.random.randint(k_edge, shape, 0, len(self.edges))]
        flip = jax.random.bernoulli(k_dir, 0.5, shape)
        return jnp.where(flip[..., None], ends[..., ::-1], ends)

    def apply(self, draws, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Proposals for one move's (n_chains, 2) (src, dst); see the module doc."""
        d = self.hilbert.local_size
        at_src, at_dst = _one_hot(sigma, draws[:, 0]), _one_hot(sigma, draws[:, 1])
        k_src = self.hilbert.values_to_indices(_entry(sigma, at_src))
        k_dst = self.hilbert.values_to_indices(_entry(sigma, at_dst))
        step = ((k_src > 0) & (k_dst < d - 1)).astype(jnp.int32)
        new_src = self.hilbert.indices_to_values(k_src - step)
        new_dst = self.hilbert.indices_to_values(k_dst + step)
        sigma_p = _swap(sigma, at_src, at_dst, new_src, new_dst)
        return sigma_p, jnp.zeros(sigma.shape[0])

    def propose(self, key: jax.Array, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Propose new configurations; see the module docstring."""
        return propose_from_draws(self, key, sigma)


@dataclasses.dataclass(frozen=True)
class HamiltonianRule:
    """Propose uniformly one of the configurations an operator connects to.

    The candidates of sigma are the sigma' != sigma with |<sigma|O|sigma'>| > 1e-12
    that lie in ``operator.hilbert`` (slots of ``get_conn``); with n(sigma) of them,
    q(sigma' | sigma) = 1 / n(sigma) and
    ``log_q_ratio = log n(sigma) - log n(sigma')``. A configuration without candidates
    proposes itself. Ergodic only if the operator connects the whole space (e.g. a
    Heisenberg term alone keeps total Sz). Costs two ``get_conn`` calls per proposal.

    Attributes:
        operator: object with ``hilbert`` and ``get_conn(sigma) -> (sigma_p, mels)``,
            shapes (..., n_conn, n_sites) int8 and (..., n_conn) (an
            ``nqs.operator.LocalOperator``). Slots are counted, so a configuration
            reached through two terms counts twice; the ratio stays exact when each
            term's matrix has a symmetric pattern of non-zeros (Hermitian terms).
    """

    operator: Any

    def _candidates(self, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(n, n_conn, n_sites) connected configurations and (n, n_conn) bool mask."""
        sigma_p, mels = self.operator.get_conn(sigma)
        moved = jnp.any(sigma_p != sigma[:, None, :], axis=-1)
        ok = moved & (jnp.abs(mels) > MEL_TOLERANCE)
        return sigma_p, ok & self.operator.hilbert.is_valid(sigma_p)

    def draw(self, key: jax.Array, n_moves: int, n_chains: int) -> jax.Array:
        """(n_moves, n_chains) float64 uniforms in [0, 1) choosing the candidate."""
        return jax.random.uniform(key, (n_moves, n_chains), dtype=jnp.float64)

    def apply(self, draws, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Proposals for one move's (n_chains,) uniforms; see the module docstring.

        The k-th valid candidate is taken, k = floor(u n(sigma)), uniform in
        0..n(sigma)-1.
        """
        sigma_p_all, ok = self._candidates(sigma)
        n_fwd = jnp.sum(ok, axis=-1)
        k = jnp.minimum(jnp.floor(draws * n_fwd).astype(jnp.int32), n_fwd - 1)
        # first slot where the running count of valid candidates exceeds k
        pick = jnp.argmax(jnp.cumsum(ok, axis=-1, dtype=jnp.int32) > k[:, None], -1)
        chosen = sigma_p_all[jnp.arange(sigma.shape[0]), pick]
        sigma_p = jnp.where((n_fwd > 0)[:, None], chosen, sigma).astype(sigma.dtype)
        n_bwd = jnp.sum(self._candidates(sigma_p)[1], axis=-1)
        log_q_ratio = jnp.where(
            n_fwd > 0,
            jnp.log(jnp.maximum(n_fwd, 1)) - jnp.log(jnp.maximum(n_bwd, 1)),
            0.0,
        )
        return sigma_p, log_q_ratio

    def propose(self, key: jax.Array, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Propose new configurations; see the module docstring."""
        return propose_from_draws(self, key, sigma)
