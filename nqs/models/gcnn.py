"""Group-equivariant convolutional network (GCNN) over a symmetry sector's group.

Roth & MacDonald, "Group convolutional neural networks improve quantum state
accuracy" (2021); Roth, Szabó & MacDonald (2023). The M elements g of the sector
(translations ⋊ little group of k) index the feature maps f(g)_c:

- embedding: f¹(g)_c = Σ_i σ[perms[g]]_i W_{ic} + b_c;
- group convolutions, l = 2..L: f^l(g)_c = Σ_{g'} Σ_d a^{l-1}(g')_d K^l[g⁻¹g', d, c]
  + b^l_c, with a = SELU(f) (real and imaginary parts separately for complex
  parameters) after every layer but the last;
- output: log ψ(σ) = log Σ_g conj(χ_g) exp(Σ_c f^L(g)_c) (+ s times the same sum
  for -σ with spin flip s).

Equivariance (the convention the tests check layer by layer): replacing σ by
σ[perms[h]] maps every feature map to f(g) → f(h g), i.e. ``f[..., product[h, g],
:]``, since (σ[perms[h]])[perms[g]] = σ[perms[hg]] and the convolution commutes with
left translation. With f^L(σ)(g) = φ(σ[perms[g]]) the output is the sector projection
(d / M) Σ_g conj(χ_g) φ(σ[perms[g]]) up to the factor M / d, so for a 1-d irrep
ψ(σ[perms[h]]) = χ_h ψ(σ), and ψ(-σ) = s ψ(σ) with a spin flip.

Each convolution is one dense product: with the static table T[g', g] = g⁻¹g', the
matrix K_big[(g', d), (g, c)] = K[T[g', g], d, c] of shape (M F_in, M F_out) acts on
the features flattened to (..., M F_in); the embedding likewise is σ @ W_big with
W_big[j, (g, c)] = W[E[j, g], c], E[j, g] the site i with perms[g, i] = j.
Only Σ_c f^L(g)_c enters the output, so the last layer is formed with its kernel
summed over c (M F_in by M columns).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nqs.errors import InputError

__all__ = ["GCNN", "GroupTables", "feature_sizes", "group_tables"]

# log ψ of a configuration whose projection vanishes: shift + VANISHED
VANISHED = -1000.0
# |Σ_g w_g e^{z_g}| below this fraction of Σ_g |w_g e^{z_g}| counts as a vanishing
# projection (exact cancellation up to round-off), per real precision
_CANCEL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


class GroupTables(NamedTuple):
    """Static index tables of the sector's group (numpy, read-only).

    Attributes:
        product: (M, M) int64, ``perms[product[g, h]] = perms[g][perms[h]]``.
        inverse: (M,) int64 index of g⁻¹.
        conv: (M, M) int64 T[g', g] = product[inverse[g], g'] (kernel index of
            g⁻¹g').
        embed: (N, M) int64 E[j, g] = the site i with perms[g, i] = j, so
            σ[perms[g]] · W = Σ_j σ_j W[E[j, g]].
    """

    product: np.ndarray
    inverse: np.ndarray
    conv: np.ndarray
    embed: np.ndarray


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


@functools.lru_cache(maxsize=8)
def group_tables(sector) -> GroupTables:
    """Product table, inverses and the convolution/embedding index tables.

    Elements are looked up by the bytes of their permutations.

    Args:
        sector: ``nqs.symmetry.Sector`` (its ``perms`` (M, N) must form a group).
    Returns:
        The ``GroupTables``.
    Raises:
        ValueError: two elements have the same permutation (the lattice is too small
            for a GCNN), or the permutations are not closed or lack the identity.
    """
    perms = np.asarray(sector.perms, dtype=np.int64)
    n_elem, n_sites = perms.shape
    where: dict[bytes, int] = {}
    for m, row in enumerate(perms):
        key = row.tobytes()
        if key in where:
            raise ValueError(
                f"elements {where[key]} and {m} of the {sector.group} group act as the "
                f"same site permutation: the lattice ({n_sites} sites) is too small "
                "for a GCNN, whose feature maps need distinct group elements"
            )
        where[key] = m
    identity = where.get(np.arange(n_sites, dtype=np.int64).tobytes())
    if identity is None:
        raise ValueError("the sector's permutations contain no identity")
    product = np.empty((n_elem, n_elem), dtype=np.int64)
    for g in range(n_elem):
        for h, row in enumerate(perms[g][perms]):  # row h: perms[g][perms[h]]
            idx = where.get(row.tobytes())
            if idx is None:
                raise ValueError("the sector's permutations are not closed")
            product[g, h] = idx
    inverse = np.argmax(product == identity, axis=1).astype(np.int64)
    return GroupTables(
        product=_readonly(product),
        inverse=_readonly(inverse),
        conv=_readonly(product[inverse].T),
        embed=_readonly(np.argsort(perms, axis=1).T),
    )


def feature_sizes(layers, features) -> tuple[int, ...]:
    """Features per layer, one entry per layer.

    Args:
        layers: number of layers (>= 1).
        features: an int (every layer) or a sequence of ``layers`` ints (>= 1).
    Returns:
        (F_1, ..., F_L).
    Raises:
        InputError: bad ``layers`` (key "layers") or ``features`` (key "features").
    """
    if isinstance(layers, bool) or not isinstance(layers, int | np.integer):
        raise InputError("layers", f"must be an integer, got {layers!r}")
    if layers < 1:
        raise InputError("layers", f"must be at least 1, got {layers}")
    sizes = features if isinstance(features, tuple | list) else (features,) * layers
    if len(sizes) != layers:
        raise InputError(
            "features",
            f"{len(sizes)} entries {list(sizes)} for layers = {layers}; give one per "
            "layer or a single integer",
        )
    for f in sizes:
        if isinstance(f, bool) or not isinstance(f, int | np.integer) or f < 1:
            raise InputError(
                "features", f"must be positive integers, got {list(sizes)}"
            )
    return tuple(int(f) for f in sizes)


def _selu(x: jax.Array) -> jax.Array:
    """SELU, on real and imaginary parts separately for complex x."""
    if jnp.iscomplexobj(x):
        return jax.lax.complex(jax.nn.selu(x.real), jax.nn.selu(x.imag))
    return jax.nn.selu(x)


def _real_output(sector, param_dtype) -> bool:
    """log ψ is real when every weight conj(χ_g) (and the flip sign) is +1."""
    if jnp.issubdtype(param_dtype, jnp.complexfloating):
        return False
    trivial = np.allclose(np.asarray(sector.characters), 1.0, atol=1e-12)
    return trivial and sector.spin_flip in (None, 1)


def _weights(sector) -> np.ndarray:
    """(n_copies * M,) complex128 conj(χ_g), then s conj(χ_g) with a spin flip s."""
    w = np.conj(np.asarray(sector.characters, dtype=np.complex128))
    if sector.spin_flip is not None:
        w = np.concatenate([w, sector.spin_flip * w])
    return w


def log_weighted_sum_exp(z: jax.Array, weights: np.ndarray) -> jax.Array:
    """log Σ_g w_g exp(z_g) over the last axis, stable, finite where it vanishes.

    With shift = max_g Re z_g (no gradient through it): shift + log Σ_g w_g
    exp(z_g - shift). Where |Σ| is below a round-off fraction (``_CANCEL``) of
    Σ_g |w_g exp(z_g - shift)| (an exact cancellation, e.g. an odd sector on a
    configuration fixed by an element of character -1) the result is shift +
    ``VANISHED``, and a double ``where`` keeps the gradients finite (zero) there.

    Args:
        z: (..., G) real or complex array.
        weights: (G,) complex numpy weights w_g.
    Returns:
        (...) complex array.
    """
    real = jnp.finfo(z.dtype).dtype
    shift = jax.lax.stop_gradient(jnp.max(jnp.real(z), axis=-1, keepdims=True))
    terms = jnp.exp(z - shift) * jnp.asarray(weights, jnp.result_type(z, 1j))
    total = jnp.sum(terms, axis=-1)
    scale = jnp.sum(jnp.abs(terms), axis=-1)
    vanished = jnp.abs(total) <= _CANCEL.get(np.dtype(real), 1e-4) * scale
    safe = jnp.where(vanished, jnp.ones_like(total), total)
    shift = shift[..., 0]
    return jnp.where(vanished, shift + VANISHED, jnp.log(safe) + shift)


class GCNN(nn.Module):
    """Group-equivariant CNN over the sector's group (module docstring).

    Parameters: ``kernel_1`` (N, F_1) and ``bias_1`` (F_1,) of the embedding;
    ``kernel_l`` (M, F_{l-1}, F_l) and ``bias_l`` (F_l,) of each group convolution
    l = 2..L. Initialisation: normal (complex normal, real and imaginary parts with
    half the variance each, for a complex ``param_dtype``) of variance 1 / N for the
    embedding and 1 / (M F_in) for the convolutions, 1 / (M F_in F_L) for the last
    layer (only its sum over features enters log ψ); biases 0. Pre-activations and
    the output then have variance O(1) for any N and depth.

    Output dtype: real (``param_dtype``'s precision) for real parameters in a sector
    whose weights are all +1 (every χ_g = 1, spin flip None or +1): then the sum is
    positive and log ψ = logsumexp. Otherwise complex (complex128 for float64 or
    complex128 parameters), since the sum can be negative or complex. For a d > 1
    irrep the output is the character projection (it need not transform as χ_h).

    Hidden features of the configuration σ (not of -σ) are sown to
    ``intermediates/features`` when that collection is mutable: one (..., M, F_l)
    array per layer (pre-activation; the last layer as Σ_c f^L, (..., M)).

    Attributes:
        sector: ``nqs.symmetry.Sector`` (given by the builder from ``[symmetry]``).
        layers: number of layers L (the embedding counts as layer 1).
        features: features per layer, an int or a tuple of L ints.
        param_dtype: float64, complex128 (float32, complex64 also work).
    """

    sector: Any = None
    layers: int = 4
    features: int | tuple[int, ...] = 4
    param_dtype: Any = jnp.complex128

    @nn.compact
    def __call__(self, sigma: jax.Array) -> jax.Array:
        """Log-amplitudes.

        Args:
            sigma: (..., N) int8 configurations, entries ±1.
        Returns:
            (...) log ψ, real or complex (class docstring).
        Raises:
            ValueError: no sector; InputError: bad ``layers`` or ``features``.
        """
        if self.sector is None:
            raise ValueError("gcnn needs a [symmetry] section")
        sizes = feature_sizes(self.layers, self.features)
        tables = group_tables(self.sector)
        n_elem, n_sites = self.sector.perms.shape
        if sigma.shape[-1] != n_sites:
            raise ValueError(
                f"configurations have {sigma.shape[-1]} sites, the sector {n_sites}"
            )
        dtype = self.param_dtype
        batch = sigma.shape[:-1]
        x = jnp.asarray(sigma, dtype)
        h = self._embedding(x, tables, sizes, n_sites, n_elem)
        for layer in range(2, len(sizes) + 1):
            h = self._convolution(_selu(h), layer, tables, sizes, n_elem)
        z = h.reshape(batch + (-1,))  # (..., n_copies * M)
        if _real_output(self.sector, dtype):
            return jax.nn.logsumexp(z, axis=-1)
        z = jnp.asarray(z, jnp.result_type(dtype, 1j))
        return log_weighted_sum_exp(z, _weights(self.sector))

    def _sow(self, h: jax.Array, width: int, n_elem: int) -> None:
        if self.is_mutable_collection("intermediates"):
            f = h[..., 0, :].reshape(h.shape[:-2] + (n_elem, width))
            self.sow("intermediates", "features", f if width > 1 else f[..., 0])

    def _embedding(self, x, tables, sizes, n_sites, n_elem):
        """(..., n_copies, M F_1) f¹ of σ (and -σ), M F_1 → M if it is the last."""
        width = sizes[0]
        last = len(sizes) == 1
        var = 1.0 / n_sites / (width if last else 1)
        init = nn.initializers.normal(np.sqrt(var))
        kernel = self.param("kernel_1", init, (n_sites, width), self.param_dtype)
        bias = self.param("bias_1", nn.initializers.zeros, (width,), self.param_dtype)
        if last:
            kernel, bias, width = kernel.sum(-1, keepdims=True), bias.sum(-1), 1
        big = kernel[tables.embed].reshape(n_sites, n_elem * width)
        e = (x @ big)[..., None, :]
        if self.sector.spin_flip is not None:
            e = jnp.concatenate([e, -e], axis=-2)
        h = e + jnp.tile(bias, n_elem)
        self._sow(h, width, n_elem)
        return h

    def _convolution(self, a, layer, tables, sizes, n_elem):
        """(..., n_copies, M F_l) group convolution of the activations a."""
        f_in, width = sizes[layer - 2], sizes[layer - 1]
        last = layer == len(sizes)
        var = 1.0 / (n_elem * f_in) / (width if last else 1)
        init = nn.initializers.normal(np.sqrt(var))
        shape = (n_elem, f_in, width)
        kernel = self.param(f"kernel_{layer}", init, shape, self.param_dtype)
        bias = self.param(
            f"bias_{layer}", nn.initializers.zeros, (width,), self.param_dtype
        )
        if last:
            kernel, bias, width = kernel.sum(-1, keepdims=True), bias.sum(-1), 1
        big = kernel[tables.conv]  # (g', g, d, c)
        big = big.transpose(0, 2, 1, 3).reshape(n_elem * f_in, n_elem * width)
        h = a @ big + jnp.tile(bias, n_elem)
        self._sow(h, width, n_elem)
        return h
