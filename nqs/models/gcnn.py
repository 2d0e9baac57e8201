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

Evaluation (real arithmetic, batch as the minor axis, convolutions in the Fourier
basis of the translations where that is cheaper) is in ``nqs.models.group_conv``;
the group's index tables and its T ⋊ P structure in ``nqs.models.group_tables``.
Only Σ_c f^L(g)_c enters the output, so the last layer's kernel is summed over c
first.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nqs.errors import InputError
from nqs.models.group_conv import complex_left, embed, fourier_conv, use_fourier
from nqs.models.group_tables import FourierPlan, GroupTables, fourier_plan, group_tables
from nqs.models.projection import log_weighted_sum_parts

__all__ = [
    "GCNN",
    "FourierPlan",
    "GroupTables",
    "feature_sizes",
    "fourier_plan",
    "group_tables",
]


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
            given = list(features) if isinstance(features, tuple | list) else features
            raise InputError("features", f"must be positive integers, got {given}")
    return tuple(int(f) for f in sizes)


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


_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def _selu(x: jax.Array) -> jax.Array:
    """SELU of every real entry (both parts of a complex feature), with exp(x) - 1
    for x < 0 (XLA's CPU expm1 is slower; the absolute error stays ~1e-16)."""
    neg = _SELU_ALPHA * (jnp.exp(jnp.minimum(x, 0.0)) - 1.0)
    return _SELU_SCALE * jnp.where(x > 0, x, neg)


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
    array per layer (pre-activation, complex for complex parameters; the last layer
    as Σ_c f^L, (..., M)).

    Attributes:
        sector: ``nqs.symmetry.Sector`` (given by the builder from ``[symmetry]``).
        layers: number of layers L (the embedding counts as layer 1).
        features: features per layer, an int or a tuple of L ints.
        param_dtype: float64, complex128 (float32, complex64 also work).
        fourier: convolutions in the Fourier basis of the translations (True, when
            the group is T ⋊ P), as dense products (False), or whichever needs
            fewer multiply-adds (None).
    """

    sector: Any = None
    layers: int = 4
    features: int | tuple[int, ...] = 4
    param_dtype: Any = jnp.complex128
    fourier: bool | None = None

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
        n_elem, n_sites = self.sector.perms.shape
        if sigma.shape[-1] != n_sites:
            raise ValueError(
                f"configurations have {sigma.shape[-1]} sites, the sector {n_sites}"
            )
        tables = group_tables(self.sector)
        real = jnp.finfo(self.param_dtype).dtype
        batch = sigma.shape[:-1]
        # features are (parts, M F, columns): the batch is the minor axis, so every
        # product below is a plain matrix product on contiguous data
        x = jnp.asarray(sigma, real).reshape(-1, n_sites).T
        if self.sector.spin_flip is not None:
            x = jnp.concatenate([x, -x], axis=1)  # columns: σ rows, then -σ rows
        h = self._embedding(x, tables, sizes, batch)
        for layer in range(2, len(sizes) + 1):
            h = self._convolution(_selu(h), layer, tables, sizes, batch)
        parts = h.shape[0]  # h: (parts, M, copies B)
        z = h.reshape(parts, n_elem, -1, math.prod(batch)).transpose(0, 3, 2, 1)
        z = z.reshape((parts,) + batch + (-1,))  # (parts, ..., copies M)
        if _real_output(self.sector, self.param_dtype):
            return jax.nn.logsumexp(z[0], axis=-1)
        y = z[1] if parts == 2 else None
        return log_weighted_sum_parts(z[0], y, _weights(self.sector))

    def _params(self, layer: int, shape: tuple[int, ...], fan_in: int, last: bool):
        """kernel_l (complex normal, variance 1 / fan_in, / F_L if last), bias_l."""
        width = shape[-1]
        init = nn.initializers.normal(np.sqrt(1.0 / fan_in / (width if last else 1)))
        kernel = self.param(f"kernel_{layer}", init, shape, self.param_dtype)
        zeros = nn.initializers.zeros
        bias = self.param(f"bias_{layer}", zeros, (width,), self.param_dtype)
        if last:  # only Σ_c f^L(g)_c enters the output
            kernel, bias = kernel.sum(-1, keepdims=True), bias.sum(-1, keepdims=True)
        return kernel, bias

    @staticmethod
    def _bias(bias: jax.Array, parts: int, n_elem: int, real) -> jax.Array:
        """(parts, M F, 1) real bias of every element, (Re, Im) for complex ones."""
        bias = jnp.tile(bias, n_elem)
        both = [jnp.real(bias), jnp.imag(bias).astype(jnp.real(bias).dtype)]
        return jnp.stack(both[:parts])[..., None].astype(real)

    def _embedding(self, x, tables, sizes, batch):
        """(parts, M F_1, columns) real f¹ of the columns x (N, columns)."""
        n_sites, n_elem = tables.embed.shape
        kernel, bias = self._params(1, (n_sites, sizes[0]), n_sites, len(sizes) == 1)
        width = kernel.shape[-1]
        kernels = _real_parts(kernel, x.dtype)
        h = embed(x, kernels, tables.embed, self.sector.perms)
        h = h + self._bias(bias, len(kernels), n_elem, x.dtype)
        self._sow(h, width, batch)
        return h

    def _convolution(self, a, layer, tables, sizes, batch):
        """(parts, M F_l, columns) group convolution of the activations a."""
        n_elem = len(tables.conv)
        f_in, last = sizes[layer - 2], layer == len(sizes)
        shape = (n_elem, f_in, sizes[layer - 1])
        kernel, bias = self._params(layer, shape, n_elem * f_in, last)
        width, parts = kernel.shape[-1], a.shape[0]
        plan = fourier_plan(self.sector)
        if use_fourier(plan, f_in, width, parts, self.fourier):
            h = fourier_conv(a, _real_parts(kernel, a.dtype), plan)
        else:
            big = kernel[tables.conv].transpose(1, 3, 0, 2)  # (g, c, g', d)
            big = big.reshape(n_elem * width, n_elem * f_in)
            big = complex_left(big, parts, parts).astype(a.dtype)
            h = (big @ a.reshape(-1, a.shape[-1])).reshape(parts, -1, a.shape[-1])
        h = h + self._bias(bias, parts, n_elem, a.dtype)
        self._sow(h, width, batch)
        return h

    def _sow(self, h: jax.Array, width: int, batch) -> None:
        """Sow (..., M, F) (or (..., M) for F = 1) features of σ's columns."""
        if not self.is_mutable_collection("intermediates"):
            return
        n_rows = math.prod(batch)
        f = jnp.moveaxis(h[..., :n_rows], -1, 1)  # (parts, rows, M F)
        f = f.reshape((h.shape[0],) + batch + (-1, width))
        f = f[0] if h.shape[0] == 1 else jax.lax.complex(f[0], f[1])
        self.sow("intermediates", "features", f if width > 1 else f[..., 0])


def _real_parts(kernel: jax.Array, real) -> tuple[jax.Array, ...]:
    """(Re K,) for a real kernel, (Re K, Im K) for a complex one, in ``real``."""
    if jnp.iscomplexobj(kernel):
        return jnp.real(kernel).astype(real), jnp.imag(kernel).astype(real)
    return (kernel.astype(real),)
