"""Hilbert spaces of lattice configurations: spins and bosons, optionally constrained.

A configuration is an ``int8`` array ``(..., n_sites)``. Spin-s entries are ``2m`` for
``m = -s..s`` (spin-1/2: -1/+1, spin-1: -2/0/+2); Fock entries are occupations
``0..n_max``. Each site value ``v`` has a local index ``k = (v - offset) / step`` in
``0..local_size-1``. A space may fix the sum of the entries (``2 * total_sz`` for spins,
``n_particles`` for bosons).

Basis order (``all_states``, ``states_to_indices``): lexicographic in local indices with
site 0 most significant, i.e. ascending in ``key = sum_i k_i * local_size**(n-1-i)``.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
import operator

import jax
import jax.numpy as jnp
import numpy as np

_INT64_MAX = 2**63 - 1
_CHUNK_ROWS = 1 << 14  # rows per numpy chunk in states_to_indices (cache friendly)
_FLOAT_KEY_MAX = 2**53  # keys below this are exact in a float64 matmul
_DENSE_TABLE_MAX = 2**26  # largest dense key -> index table (int32, 256 MB)


def _as_int(value, name: str) -> int:
    """Return ``value`` as a Python int, or raise a ValueError naming ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _count_compositions(n: int, total: int, d: int) -> int:
    """Count (k_1..k_n) with 0 <= k_i < d summing to total, by inclusion-exclusion."""
    if total < 0 or total > n * (d - 1):
        return 0
    if n == 0 or d == 2:
        return math.comb(n, total)
    count = 0
    for j in range(min(n, total // d) + 1):
        count += (-1) ** j * math.comb(n, j) * math.comb(total - j * d + n - 1, n - 1)
    return count


class AbstractHilbert(abc.ABC):
    """Shared implementation of the discrete Hilbert spaces; subclasses are final.

    Subclasses define ``n_sites``, ``local_size``, ``_offset``, ``_step`` and
    ``constraint_sum``; entries are ``value = _offset + _step * local_index``.
    """

    n_sites: int

    # -- structure ---------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def local_size(self) -> int:
        """Defined by each space."""

    @property
    @abc.abstractmethod
    def constraint_sum(self) -> int | None:
        """Defined by each space."""

    @property
    @abc.abstractmethod
    def _offset(self) -> int:
        """Defined by each space."""

    @property
    @abc.abstractmethod
    def _step(self) -> int:
        """Defined by each space."""

    @property
    def local_values(self) -> tuple[int, ...]:
        """Allowed site entries, ascending."""
        return tuple(self._offset + self._step * k for k in range(self.local_size))

    @property
    def _index_sum(self) -> int | None:
        """Required sum of the local indices, or None when unconstrained."""
        if self.constraint_sum is None:
            return None
        return (self.constraint_sum - self._offset * self.n_sites) // self._step

    @property
    def n_states(self) -> int:
        """Dimension of the (constrained) space, as an exact Python int."""
        if self._index_sum is None:
            return self.local_size**self.n_sites
        return _count_compositions(self.n_sites, self._index_sum, self.local_size)

    # -- per-site conversions ----------------------------------------------------------
    def values_to_indices(self, sigma) -> jax.Array:
        """Local indices of site entries.

        Args:
            sigma: (...) integer site entries (assumed allowed).
        Returns:
            (...) int32 local indices in ``0..local_size-1``.
        """
        sigma = jnp.asarray(sigma, dtype=jnp.int32)
        return (sigma - self._offset) // self._step

    def indices_to_values(self, idx) -> jax.Array:
        """Site entries of local indices.

        Args:
            idx: (...) integer local indices in ``0..local_size-1``.
        Returns:
            (...) int8 site entries.
        """
        idx = jnp.asarray(idx, dtype=jnp.int32)
        return (self._offset + self._step * idx).astype(jnp.int8)

    def is_valid(self, sigma) -> jax.Array:
        """Whether each configuration belongs to the space (entries and constraint).

        Args:
            sigma: (..., n_sites) integer configurations.
        Returns:
            (...) bool. Jittable.
        """
        sigma = jnp.asarray(sigma, dtype=jnp.int32)
        return self._is_valid(jnp, sigma)

    def _is_valid(self, xp, sigma):
        shifted = sigma - self._offset
        ok = (shifted >= 0) & (shifted <= self._step * (self.local_size - 1))
        if self._step != 1:
            ok = ok & (shifted % self._step == 0)
        ok = xp.all(ok, axis=-1)
        if self.constraint_sum is not None:
            ok = ok & (xp.sum(sigma, axis=-1) == self.constraint_sum)
        return ok

    # -- sampling ----------------------------------------------------------------------
    def random_states(self, key: jax.Array, n: int) -> jax.Array:
        """Uniformly random configurations of the (constrained) space.

        With a sum constraint, sites are drawn one after another with probabilities
        proportional to the number of completions, which is exactly uniform.

        Args:
            key: PRNG key.
            n: number of configurations (static).
        Returns:
            (n, n_sites) int8 valid configurations. Jittable.
        """
        d = self.local_size
        if self._index_sum is None:
            idx = jax.random.randint(key, (n, self.n_sites), 0, d)
            return self.indices_to_values(idx)
        total = self._index_sum
        log_counts = jnp.asarray(_log_completion_counts(self.n_sites, total, d))
        candidates = jnp.arange(d)

        def site(remaining, xs):
            m, site_key = xs  # m = number of sites after this one
            rest = remaining[:, None] - candidates[None, :]
            logits = jnp.where(
                rest >= 0, log_counts[m, jnp.clip(rest, 0, total)], -jnp.inf
            )
            k = jax.random.categorical(site_key, logits, axis=-1).astype(jnp.int32)
            return remaining - k, k

        ms = jnp.arange(self.n_sites - 1, -1, -1)
        keys = jax.random.split(key, self.n_sites)
        start = jnp.full((n,), total, dtype=jnp.int32)
        _, idx = jax.lax.scan(site, start, (ms, keys))
        return self.indices_to_values(idx.T)

    # -- enumeration -------------------------------------------------------------------
    def _check_enumerable(self) -> None:
        if self.n_states > _INT64_MAX:
            raise ValueError(
                f"the space has {self.n_states} states, too many to index with int64; "
                "exact enumeration needs a smaller n_sites"
            )

    def all_states(self) -> np.ndarray:
        """Every basis configuration, in basis order.

        Returns:
            (n_states, n_sites) int8 numpy array.
        Raises:
            ValueError: if the space is too large to index with int64.
        """
        self._check_enumerable()
        n, d, total = self.n_sites, self.local_size, self._index_sum
        idx = np.zeros((1, 0), dtype=np.int8)
        remaining = np.zeros(1, dtype=np.int64) if total is None else np.array([total])
        for i in range(n):
            m = n - 1 - i  # sites left after site i
            children = np.arange(d, dtype=np.int64)
            rest = remaining[:, None] - children[None, :]  # (n_prefix, d)
            if total is None:
                keep = np.ones(rest.shape, dtype=bool)
            else:
                keep = (rest >= 0) & (rest <= m * (d - 1))
            parent, k = np.nonzero(keep)  # row-major: parent major, k minor
            new = np.empty((parent.size, i + 1), dtype=np.int8)
            new[:, :i] = idx[parent]
            new[:, i] = k
            idx, remaining = new, rest[parent, k]
        return (self._offset + self._step * idx).astype(np.int8)

    def states_to_indices(self, sigma):
        """Position of each configuration in ``all_states()``, -1 if not in the basis.

        numpy input: the key ``sum_i k_i d**(n-1-i)`` (exact float64 matmul) is the
        index of an unconstrained space and is looked up in a cached dense table for a
        constrained space with ``d**n <= 2**26``. Otherwise, and for jax input, the
        index is computed by combinatorial ranking: it is the number of basis states
        lexicographically smaller than the configuration.

        Args:
            sigma: (..., n_sites) integer configurations, numpy or jax.
        Returns:
            (...) int64 indices; numpy in gives numpy out, jax in gives jax out
            (jittable).
        Raises:
            ValueError: if the space is too large to index with int64.
        """
        self._check_enumerable()
        if isinstance(sigma, jax.Array):
            return self._rank(jnp, sigma, self._rank_table())
        sigma = np.asarray(sigma)
        batch = sigma.shape[:-1]
        flat = sigma.reshape(-1, self.n_sites)
        n_keys = self.local_size**self.n_sites
        use_keys = n_keys <= _FLOAT_KEY_MAX and (
            self._index_sum is None or n_keys <= _DENSE_TABLE_MAX
        )
        if use_keys:
            lookup = None if self._index_sum is None else self._dense_lookup
        else:
            table = self._rank_table()
        out = np.empty(flat.shape[0], dtype=np.int64)
        for start in range(0, flat.shape[0], _CHUNK_ROWS):
            chunk = flat[start : start + _CHUNK_ROWS]
            if use_keys:
                index = self._keys(chunk)
                if lookup is not None:
                    index = np.where(index < 0, -1, lookup[np.maximum(index, 0)])
            else:
                index = self._rank(np, chunk, table)
            out[start : start + _CHUNK_ROWS] = index
        return out.reshape(batch)

    def _keys(self, sigma: np.ndarray) -> np.ndarray:
        """(m, n_sites) numpy configurations -> (m,) int64 keys, -1 for bad entries.

        Entries go through a 256-entry table (int8 viewed as uint8) to float64 local
        indices, or ``-d**n`` for entries not allowed, which makes the key negative.
        """
        n, d = self.n_sites, self.local_size
        if sigma.dtype != np.int8:
            is_int8 = np.all((sigma >= -128) & (sigma <= 127) & (sigma % 1 == 0), -1)
            sigma = np.where(is_int8[:, None], sigma, self._offset - 1).astype(np.int8)
        lut = np.full(256, -float(d**n))
        lut[np.array(self.local_values, dtype=np.int8).view(np.uint8)] = np.arange(d)
        idx = np.take(lut, sigma.view(np.uint8))
        keys = idx @ (np.float64(d) ** np.arange(n - 1, -1, -1))
        return np.where(keys < 0, -1, keys.astype(np.int64))

    @functools.cached_property
    def _dense_lookup(self) -> np.ndarray:
        """(d**n,) int32 basis index of every key, -1 outside the basis (cached)."""
        keys = np.concatenate(
            [
                self._keys(part)
                for part in np.array_split(
                    self.all_states(), max(1, self.n_states // _CHUNK_ROWS)
                )
            ]
        )
        lookup = np.full(self.local_size**self.n_sites, -1, dtype=np.int32)
        lookup[keys] = np.arange(self.n_states, dtype=np.int32)
        return lookup

    def _rank_table(self) -> np.ndarray:
        """Flattened (n_sites, index_sum + 1, local_size) int64 table ``G``.

        ``G[m, r, k]`` = number of completions of ``m`` further sites after choosing a
        local index ``j < k`` when ``r`` remains to distribute (constrained case), or
        ``k * d**m`` (unconstrained case, r axis of length 1).
        """
        n, d, total = self.n_sites, self.local_size, self._index_sum
        if total is None:
            powers = np.array([d**m for m in range(n)], dtype=np.int64)
            return (powers[:, None] * np.arange(d, dtype=np.int64)[None, :]).ravel()
        counts = [
            [_count_compositions(m, r, d) for r in range(total + 1)] for m in range(n)
        ]
        table = np.zeros((n, total + 1, d), dtype=np.int64)
        for m in range(n):
            for r in range(total + 1):
                acc = 0
                for k in range(d):
                    table[m, r, k] = min(acc, _INT64_MAX)  # large only if unreachable
                    acc += counts[m][r - k] if r - k >= 0 else 0
        return table.ravel()

    def _rank(self, xp, sigma, table):
        n, d, total = self.n_sites, self.local_size, self._index_sum
        sigma = sigma.astype(xp.int32)
        valid = self._is_valid(xp, sigma)
        k = xp.clip((sigma - self._offset) // self._step, 0, d - 1)
        m = xp.arange(n - 1, -1, -1)
        if total is None:
            flat = m * d + k
        else:
            before = xp.cumsum(k, axis=-1) - k  # index sum of the sites before i
            rest = xp.clip(total - before, 0, total)
            flat = (m * (total + 1) + rest) * d + k
        rank = xp.sum(xp.asarray(table)[flat], axis=-1)
        return xp.where(valid, rank, -1).astype(xp.int64)


def _log_completion_counts(n: int, total: int, d: int) -> np.ndarray:
    """log of the number of ways m sites (m < n) sum to r (r <= total) in local indices.

    Returns:
        (n, total + 1) float64, -inf where impossible.
    """
    table = np.full((n, total + 1), -np.inf)
    table[0, 0] = 0.0
    for m in range(1, n):
        acc = np.full(total + 1, -np.inf)
        for k in range(d):
            shifted = np.full(total + 1, -np.inf)
            shifted[k:] = table[m - 1, : total + 1 - k]
            acc = np.logaddexp(acc, shifted)
        table[m] = acc
    return table


@dataclasses.dataclass(frozen=True)
class Spin(AbstractHilbert):
    """Spin-s sites; entries ``2m`` for ``m = -s..s``.

    Attributes:
        n_sites: number of sites (>= 1).
        s: spin per site, a positive half-integer (0.5, 1, 1.5, ...).
        total_sz: fixed total magnetisation sum_i m_i, or None for no constraint.
    """

    n_sites: int
    s: float = 0.5
    total_sz: float | None = None

    def __post_init__(self):
        n_sites = _as_int(self.n_sites, "n_sites")
        if n_sites < 1:
            raise ValueError(f"n_sites must be >= 1, got {n_sites}")
        try:
            s = float(self.s)
        except (TypeError, ValueError):
            raise ValueError(
                f"s must be a positive half-integer, got {self.s!r}"
            ) from None
        two_s = round(2 * s)
        if two_s < 1 or abs(2 * s - two_s) > 1e-9:
            raise ValueError(
                f"s must be a positive half-integer (0.5, 1, 1.5, ...), got {self.s!r}"
            )
        if two_s > 127:
            raise ValueError(f"s must be <= 63.5 to fit int8 entries, got {self.s!r}")
        object.__setattr__(self, "n_sites", n_sites)
        object.__setattr__(self, "s", two_s / 2)
        if self.total_sz is not None:
            object.__setattr__(self, "total_sz", self._check_total_sz(two_s))

    def _check_total_sz(self, two_s: int) -> float:
        try:
            two_sz_float = 2 * float(self.total_sz)
        except (TypeError, ValueError):
            raise ValueError(
                f"total_sz must be a number or None, got {self.total_sz!r}"
            ) from None
        two_sz = round(two_sz_float)
        n_two_s = self.n_sites * two_s
        if abs(two_sz_float - two_sz) > 1e-9 or (two_sz - n_two_s) % 2 != 0:
            raise ValueError(
                f"total_sz={self.total_sz!r} is not reachable: total_sz - n_sites*s "
                f"must be an integer (n_sites={self.n_sites}, s={two_s / 2})"
            )
        if abs(two_sz) > n_two_s:
            raise ValueError(
                f"total_sz={self.total_sz!r} is not reachable: |total_sz| must be <= "
                f"n_sites*s = {n_two_s / 2}"
            )
        return two_sz / 2

    @property
    def two_s(self) -> int:
        """2s as an exact integer."""
        return round(2 * self.s)

    @property
    def local_size(self) -> int:
        return self.two_s + 1

    @property
    def constraint_sum(self) -> int | None:
        return None if self.total_sz is None else round(2 * self.total_sz)

    @property
    def _offset(self) -> int:
        return -self.two_s

    @property
    def _step(self) -> int:
        return 2


@dataclasses.dataclass(frozen=True)
class Fock(AbstractHilbert):
    """Bosonic sites with occupations ``0..n_max``.

    Attributes:
        n_sites: number of sites (>= 1).
        n_max: maximum occupation per site (>= 1).
        n_particles: fixed total number of particles, or None for no constraint.
    """

    n_sites: int
    n_max: int
    n_particles: int | None = None

    def __post_init__(self):
        n_sites = _as_int(self.n_sites, "n_sites")
        if n_sites < 1:
            raise ValueError(f"n_sites must be >= 1, got {n_sites}")
        n_max = _as_int(self.n_max, "n_max")
        if not 1 <= n_max <= 127:
            raise ValueError(f"n_max must be an integer in 1..127, got {n_max}")
        object.__setattr__(self, "n_sites", n_sites)
        object.__setattr__(self, "n_max", n_max)
        if self.n_particles is not None:
            n_particles = _as_int(self.n_particles, "n_particles")
            if not 0 <= n_particles <= n_sites * n_max:
                raise ValueError(
                    f"n_particles must be in 0..n_sites*n_max = {n_sites * n_max}, "
                    f"got {n_particles}"
                )
            object.__setattr__(self, "n_particles", n_particles)

    @property
    def local_size(self) -> int:
        return self.n_max + 1

    @property
    def constraint_sum(self) -> int | None:
        return self.n_particles

    @property
    def _offset(self) -> int:
        return 0

    @property
    def _step(self) -> int:
        return 1
