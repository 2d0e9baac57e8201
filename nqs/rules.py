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
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

# An off-diagonal matrix element counts as a connection when |mel| exceeds this.
MEL_TOLERANCE = 1e-12


def _chain_rows(sigma: jax.Array) -> jax.Array:
    """(n_chains, 1) row indices for per-chain fancy indexing."""
    return jnp.arange(sigma.shape[0])[:, None]


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

    def propose(self, key: jax.Array, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Propose new configurations; see the module docstring."""
        n_chains, n_sites = sigma.shape
        d = self.hilbert.local_size
        k_site, k_shift = jax.random.split(key)
        site = jax.random.randint(k_site, (n_chains,), 0, n_sites)
        shift = jax.random.randint(k_shift, (n_chains,), 1, d)
        rows = jnp.arange(n_chains)
        old = self.hilbert.values_to_indices(sigma[rows, site])
        new = self.hilbert.indices_to_values((old + shift) % d)
        sigma_p = sigma.at[rows, site].set(new)
        return sigma_p, jnp.zeros(n_chains)


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

    def propose(self, key: jax.Array, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Propose new configurations; see the module docstring."""
        n_chains = sigma.shape[0]
        edges = jnp.asarray(self.edges, dtype=jnp.int32)  # (n_edges, 2)
        pick = jax.random.randint(key, (n_chains,), 0, edges.shape[0])
        ends = edges[pick]  # (n_chains, 2)
        rows = _chain_rows(sigma)
        values = sigma[rows, ends]  # (n_chains, 2)
        sigma_p = sigma.at[rows, ends].set(values[:, ::-1])
        return sigma_p, jnp.zeros(n_chains)


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

    def propose(self, key: jax.Array, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Propose new configurations; see the module docstring."""
        n_chains = sigma.shape[0]
        d = self.hilbert.local_size
        edges = jnp.asarray(self.edges, dtype=jnp.int32)
        k_edge, k_dir = jax.random.split(key)
        ends = edges[jax.random.randint(k_edge, (n_chains,), 0, edges.shape[0])]
        flip = jax.random.bernoulli(k_dir, 0.5, (n_chains,))
        src = jnp.where(flip, ends[:, 1], ends[:, 0])
        dst = jnp.where(flip, ends[:, 0], ends[:, 1])
        rows = jnp.arange(n_chains)
        k_src = self.hilbert.values_to_indices(sigma[rows, src])
        k_dst = self.hilbert.values_to_indices(sigma[rows, dst])
        can = (k_src > 0) & (k_dst < d - 1)
        step = can.astype(jnp.int32)
        new_src = self.hilbert.indices_to_values(k_src - step)
        new_dst = self.hilbert.indices_to_values(k_dst + step)
        sigma_p = sigma.at[rows, src].set(new_src).at[rows, dst].set(new_dst)
        return sigma_p, jnp.zeros(n_chains)


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

    def propose(self, key: jax.Array, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Propose new configurations; see the module docstring."""
        sigma_p_all, ok = self._candidates(sigma)
        n_fwd = jnp.sum(ok, axis=-1)
        logits = jnp.where(ok, 0.0, -jnp.inf)
        logits = logits.at[:, 0].set(jnp.where(n_fwd == 0, 0.0, logits[:, 0]))
        pick = jax.random.categorical(key, logits, axis=-1)
        rows = jnp.arange(sigma.shape[0])
        sigma_p = jnp.where(
            (n_fwd > 0)[:, None], sigma_p_all[rows, pick], sigma
        ).astype(sigma.dtype)
        n_bwd = jnp.sum(self._candidates(sigma_p)[1], axis=-1)
        log_q_ratio = jnp.where(
            n_fwd > 0,
            jnp.log(jnp.maximum(n_fwd, 1)) - jnp.log(jnp.maximum(n_bwd, 1)),
            0.0,
        )
        return sigma_p, log_q_ratio
