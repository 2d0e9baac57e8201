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

Evaluation. Complex networks run in real arithmetic (XLA's CPU complex128 products
are ~10x slower than real ones, see ``nqs.models.rbm``): features are real arrays
(parts, M F, columns) with parts = (Re, Im) and the rows of the batch as the minor
axis, so every product is a plain matrix product; a complex product is a real one
with [[Re K, -Im K], [Im K, Re K]] blocks. The embedding is σ @ W_big with W_big[j,
(g, c)] = W[E[j, g], c] (E[j, g] the i with perms[g, i] = j). A convolution is one
dense product with K_big[(g', d), (g, c)] = K[g⁻¹g', d, c], or, when the group is T ⋊
P (element t P + p is t∘p, T abelian normal: the translations), diagonal in the
Fourier basis of T: with g = t p and g' = t u p', g⁻¹g' = p⁻¹ u p', and with â(q) =
Σ_t conj χ_q(t) a(t) (χ_q the characters of T)

    ôut(q, p) = Σ_{p'} â(q, p') K̂[p·q, p⁻¹p'],   K̂[q, r] = Σ_v χ_q(v) K[v r],

(p·q the momentum of v ↦ χ_q(p v p⁻¹)): one (P F_in, P F_out) product per q instead
of one (M F_in, M F_out) product, plus two DFTs over T as (T, T) products (8x fewer
operations for the 4x4 square space group). Its derivative rule (custom_jvp) feeds
the kernel tangent through the momentum-permuted data â(p⁻¹·q', p r), and the
embedding's through σ[perms[g]], so reverse mode forms per-row kernel cotangents of
the kernels' own size. Only Σ_c f^L(g)_c enters the output, so the last layer's
kernel is summed over c first.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from nqs.errors import InputError
from nqs.models.projection import log_weighted_sum_parts
from nqs.symmetry import character_table

__all__ = [
    "GCNN",
    "FourierPlan",
    "GroupTables",
    "feature_sizes",
    "fourier_plan",
    "group_tables",
]


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


class FourierPlan(NamedTuple):
    """The group as T ⋊ P, element t P + p = t∘p (numpy, read-only).

    Attributes:
        n_trans: T, the order of the abelian normal subgroup (elements t P).
        n_point: P, the order of the point part (elements 0..P-1).
        dft: (T, T) complex128 F[q, t] = conj χ_q(t), χ_q the characters of T.
        momentum: (P, T) int64 q' = p·q with χ_q(p v p⁻¹) = χ_{q'}(v) for all v.
        point_product: (P, P) int64 index of p r; ``point_quotient`` of p⁻¹ r.
    """

    n_trans: int
    n_point: int
    dft: np.ndarray
    momentum: np.ndarray
    point_product: np.ndarray
    point_quotient: np.ndarray


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


@functools.lru_cache(maxsize=8)
def fourier_plan(sector) -> FourierPlan | None:
    """The T ⋊ P structure of the sector's elements (t-major, P = little group).

    Args:
        sector: ``nqs.symmetry.Sector``.
    Returns:
        The ``FourierPlan``, or None when the elements are not laid out as t∘p with
        an abelian normal T of order > 1 (then only the dense convolution applies).
    """
    tables = group_tables(sector)
    product, inverse = tables.product, tables.inverse
    n_elem = len(product)
    n_point = sector.little_group.order
    n_trans = n_elem // n_point
    if n_trans < 2 or n_trans * n_point != n_elem or inverse[0] != 0:
        return None
    t, p = np.arange(n_trans) * n_point, np.arange(n_point)
    if not np.array_equal(product[t][:, p], t[:, None] + p[None, :]):
        return None  # element t P + p is not t∘p
    prod_t = product[t][:, t]
    conj = product[inverse[p]][:, product[t][:, p]]  # (P, T, P): p⁻¹ t p
    if (
        np.any(product[p][:, p] >= n_point)  # P closed
        or np.any(prod_t % n_point)  # T closed
        or not np.array_equal(prod_t, prod_t.T)  # abelian
        or np.any(conj[np.arange(n_point), :, np.arange(n_point)] % n_point)  # normal
    ):
        return None
    prod_t = prod_t // n_point
    inv_t = np.argmax(prod_t == 0, axis=1)
    classes = tuple((i,) for i in range(n_trans))
    chi = character_table(prod_t, inv_t, classes, np.arange(n_trans))  # (q, v)
    # the values are T-th roots of unity: snap them (the table is rounded to 1e-10)
    chi = np.exp(2j * np.pi * np.round(np.angle(chi) * n_trans / (2 * np.pi)) / n_trans)
    phi = product[product[p][:, t], inverse[p][:, None]] // n_point  # p v p⁻¹
    moved = chi[:, phi].transpose(1, 0, 2)  # (p, q, v): χ_q(p v p⁻¹)
    match = np.abs(moved[:, :, None, :] - chi[None, None]).max(axis=-1) < 1e-8
    if not np.all(match.sum(axis=-1) == 1):
        return None
    return FourierPlan(
        n_trans=n_trans,
        n_point=n_point,
        dft=_readonly(np.conj(chi)),
        momentum=_readonly(np.argmax(match, axis=-1)),
        point_product=_readonly(product[:n_point, :n_point]),
        point_quotient=_readonly(product[inverse[:n_point]][:, :n_point]),
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


def _complex_left(k, parts_in: int, parts_out: int):
    """Real matrix of v -> k v for complex k (..., A, B) acting on stacked parts.

    Args:
        k: complex jax or numpy array (numpy in, numpy out: constants stay out of
            the traced program).
    Returns:
        (..., parts_out A, parts_in B): [[Re k, -Im k], [Im k, Re k]] maps
        [Re v; Im v] to [Re kv; Im kv]; only its first ``parts_in`` block columns
        (real v) and ``parts_out`` block rows (the real part only).
    """
    xp = np if isinstance(k, np.ndarray) else jnp
    k_re, k_im = xp.real(k), xp.imag(k).astype(xp.real(k).dtype)
    rows = [[k_re, -k_im], [k_im, k_re]][:parts_out]
    return xp.concatenate(
        [xp.concatenate(row[:parts_in], axis=-1) for row in rows], axis=-2
    )


def _dft_matrices(dft: np.ndarray, parts: int, real) -> tuple[jax.Array, jax.Array]:
    """Real forms of the DFT over T and its inverse for features with ``parts``.

    Returns:
        forward (Q 2, parts T): rows (q, Re/Im), columns (part, t) of â(q) =
        Σ_t F[q, t] a(t); inverse (parts T, Q 2): rows (part, t), columns (q, Re/Im)
        of a(t) = (1/T) Σ_q conj(F[q, t]) â(q), real part only for parts = 1.
    """
    n_t = dft.shape[0]
    fwd = _complex_left(dft, parts, 2)  # (2Q, parts T), rows (Re/Im, q)
    fwd = fwd.reshape(2, n_t, parts * n_t).transpose(1, 0, 2)
    inv = _complex_left(np.conj(dft).T / n_t, 2, parts)  # columns (Re/Im, q)
    inv = inv.reshape(parts * n_t, 2, n_t).transpose(0, 2, 1)
    return (
        jnp.asarray(fwd.reshape(2 * n_t, parts * n_t), real),
        jnp.asarray(inv.reshape(parts * n_t, 2 * n_t), real),
    )


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
        h = _embed(x, kernels, tables.embed, self.sector.perms)
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
        if _use_fourier(plan, f_in, width, parts, self.fourier):
            h = _fourier_conv(a, _real_parts(kernel, a.dtype), plan)
        else:
            big = kernel[tables.conv].transpose(1, 3, 0, 2)  # (g, c, g', d)
            big = big.reshape(n_elem * width, n_elem * f_in)
            big = _complex_left(big, parts, parts).astype(a.dtype)
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


def _use_fourier(plan, f_in, f_out, parts, choice) -> bool:
    """Whether a convolution takes the Fourier form (``choice`` None: when it needs
    fewer multiply-adds; its reverse mode is also much cheaper, module docstring)."""
    if plan is None or choice is False:
        return False
    if choice:
        return True
    t, p = plan.n_trans, plan.n_point
    dense = (parts * t * p * f_in) * (parts * t * p * f_out)
    fourier = 2 * parts * t * t * p * (f_in + f_out) + 4 * t * p * p * f_in * f_out
    return fourier < dense


def _kernel_hat(kernels, dft: np.ndarray, real) -> jax.Array:
    """(2, Q, P, F_in, F_out) (Re, Im) of K̂[q, r] = Σ_v χ_q(v) K[v P + r].

    Args:
        kernels: (Re K,) or (Re K, Im K), each (M, F_in, F_out).
        dft: (T, T) F[q, v] = conj χ_q(v).
    """
    n_t, parts = dft.shape[0], len(kernels)
    chi = jnp.asarray(_complex_left(np.conj(dft), parts, 2), real)
    k = jnp.stack(kernels).reshape(parts * n_t, -1)
    return (chi @ k).reshape((2, n_t, -1) + kernels[0].shape[1:])


def _fourier_kernel(k_hat: jax.Array, plan: FourierPlan) -> jax.Array:
    """(Q, 2 P F_out, 2 P F_in) real blocks of K̃_{p p'}(q) = K̂[p·q, p⁻¹p'], acting
    on (Re/Im, p', d) and giving (Re/Im, p, c)."""
    n_t, n_p = plan.n_trans, plan.n_point
    f_in, f_out = k_hat.shape[-2:]
    q_idx = plan.momentum.T[:, :, None]  # (q, p, 1)
    r_idx = plan.point_quotient[None]  # (1, p, p')
    k = k_hat[:, q_idx, r_idx].transpose(0, 1, 2, 5, 3, 4)  # (2, q, p, c, p', d)
    k = jax.lax.complex(k[0], k[1]).reshape(n_t, n_p * f_out, n_p * f_in)
    return _complex_left(k, 2, 2)


def _fourier_conv(a: jax.Array, kernels: tuple, plan: FourierPlan) -> jax.Array:
    """Group convolution in the Fourier basis of T (module docstring).

    The derivative is defined (custom_jvp) so that the kernel's tangent enters
    through the momentum-permuted data Ã[q', p, r] = â(p⁻¹·q', p r): reverse mode
    then forms per-row kernel cotangents of size Q P F_in F_out, not Q P² F_in F_out,
    and gathers nothing per row on the kernel side.

    Args:
        a: (parts, M F_in, columns) real activations, element m = t P + p.
        kernels: (Re K,) or (Re K, Im K), each (M, F_in, F_out).
        plan: the ``FourierPlan``.
    Returns:
        (parts, M F_out, columns) real features.
    """

    @jax.custom_jvp
    def conv(a, kernels):
        fwd, inv = _dft_matrices(plan.dft, a.shape[0], a.dtype)
        k = _fourier_kernel(_kernel_hat(kernels, plan.dft, a.dtype), plan)
        return _inverse(inv, k @ _forward(fwd, a, plan), a.shape)

    @functools.partial(conv.defjvp, symbolic_zeros=True)
    def conv_jvp(primals, tangents):
        a, kernels = primals
        a_dot, kernels_dot = tangents
        fwd, inv = _dft_matrices(plan.dft, a.shape[0], a.dtype)
        k = _fourier_kernel(_kernel_hat(kernels, plan.dft, a.dtype), plan)
        a_hat = _forward(fwd, a, plan)
        out = _inverse(inv, k @ a_hat, a.shape)
        out_dot = jnp.zeros_like(out)
        if not isinstance(a_dot, SymbolicZero):
            out_dot = _inverse(inv, k @ _forward(fwd, a_dot, plan), a.shape)
        if not all(isinstance(t, SymbolicZero) for t in kernels_dot):
            dots = tuple(
                jnp.zeros_like(k) if isinstance(t, SymbolicZero) else t
                for k, t in zip(kernels, kernels_dot, strict=True)
            )
            k_hat_dot = _kernel_hat(dots, plan.dft, a.dtype)
            out_hat = _kernel_tangent(a_hat, k_hat_dot, plan, a.shape[-1])
            out_dot = out_dot + _inverse(inv, out_hat, a.shape)
        return out, out_dot

    return conv(a, kernels)


def _forward(fwd: jax.Array, a: jax.Array, plan: FourierPlan) -> jax.Array:
    """(Q, 2 P F_in, columns) â from a (parts, M F_in, columns)."""
    parts, _, n_cols = a.shape
    a_hat = fwd @ a.reshape(parts * plan.n_trans, -1)  # (Q 2, P F_in columns)
    return a_hat.reshape(plan.n_trans, -1, n_cols)


def _inverse(inv: jax.Array, out_hat: jax.Array, shape) -> jax.Array:
    """(parts, M F_out, columns) features from ôut (Q, 2 P F_out, columns)."""
    out = inv @ out_hat.reshape(inv.shape[1], -1)  # (parts T, P F_out columns)
    return out.reshape(shape[0], -1, shape[-1])


def _kernel_tangent(a_hat, k_hat_dot, plan: FourierPlan, n_cols: int) -> jax.Array:
    """(Q, 2 P F_out, columns) ôut(q, p) = Σ_r â(q, p r) K̂_dot[p·q, r], evaluated
    as B̃[q', p] = Σ_r Ã[q', p, r] K̂_dot[q', r] on Ã[q', p, r] = â(p⁻¹·q', p r)."""
    n_t, n_p = plan.n_trans, plan.n_point
    f_in, f_out = k_hat_dot.shape[-2:]
    a_hat = a_hat.reshape(n_t, 2, n_p, f_in, n_cols)
    source = np.argsort(plan.momentum, axis=1).T  # (q', p): the q with p·q = q'
    a_perm = a_hat[source[:, :, None], :, plan.point_product[None]]  # (q',p,r,x,d,b)
    k_re, k_im = k_hat_dot[0], k_hat_dot[1]  # (q', r, d, c)
    # rows x = Re/Im of Ã, columns y = Re/Im of B̃
    k = jnp.stack([jnp.stack([k_re, k_im], 3), jnp.stack([-k_im, k_re], 3)], 2)
    b = jnp.einsum("qprxdb,qrxdyc->qpycb", a_perm, k)  # (q', p, y, c, b)
    out_hat = b[plan.momentum.T, np.arange(n_p)[None]]  # (q, p, y, c, b)
    return out_hat.transpose(0, 2, 1, 3, 4).reshape(n_t, 2 * n_p * f_out, n_cols)


def _embed(x: jax.Array, kernels: tuple, embed: np.ndarray, perms) -> jax.Array:
    """f¹ without bias: (parts, M F, columns) from the columns x (N, columns).

    Primal: one product with W_big[(g, c), j] = W[E[j, g], c]. The kernel's tangent
    is Σ_i x[perms[g, i]] W_dot[i, c] (custom_jvp), so reverse mode forms per-row
    cotangents of W's size and scatters nothing.

    Args:
        x: (N, columns) real configurations.
        kernels: (Re W,) or (Re W, Im W), each (N, F).
        embed: (N, M) index table E; perms: (M, N) the sector's permutations.
    """

    def big(kernels):
        n_sites, n_elem = embed.shape
        w = jnp.stack(kernels)[:, embed].transpose(0, 2, 3, 1)  # (s, g, c, j)
        return w.reshape(-1, n_sites)

    @jax.custom_jvp
    def embedding(x, kernels):
        return (big(kernels) @ x).reshape(len(kernels), -1, x.shape[-1])

    @functools.partial(embedding.defjvp, symbolic_zeros=True)
    def embedding_jvp(primals, tangents):
        x, kernels = primals
        x_dot, kernels_dot = tangents
        out = embedding(x, kernels)
        out_dot = jnp.zeros_like(out)
        if not isinstance(x_dot, SymbolicZero):
            out_dot = embedding(x_dot, kernels)
        if not all(isinstance(t, SymbolicZero) for t in kernels_dot):
            dots = jnp.stack(
                [
                    jnp.zeros_like(k) if isinstance(t, SymbolicZero) else t
                    for k, t in zip(kernels, kernels_dot, strict=True)
                ]
            )
            term = jnp.einsum("gib,sic->sgcb", x[np.asarray(perms)], dots)
            out_dot = out_dot + term.reshape(out.shape)
        return out, out_dot

    return embedding(x, kernels)
