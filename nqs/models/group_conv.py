"""Group convolutions of the GCNN (``nqs.models.gcnn``) in real arithmetic.

Complex networks run in real arithmetic (XLA's CPU complex128 products
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
the kernels' own size.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from nqs.models.group_tables import FourierPlan

__all__ = ["complex_left", "embed", "fourier_conv", "use_fourier"]


def complex_left(k, parts_in: int, parts_out: int):
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
    fwd = complex_left(dft, parts, 2)  # (2Q, parts T), rows (Re/Im, q)
    fwd = fwd.reshape(2, n_t, parts * n_t).transpose(1, 0, 2)
    inv = complex_left(np.conj(dft).T / n_t, 2, parts)  # columns (Re/Im, q)
    inv = inv.reshape(parts * n_t, 2, n_t).transpose(0, 2, 1)
    return (
        jnp.asarray(fwd.reshape(2 * n_t, parts * n_t), real),
        jnp.asarray(inv.reshape(parts * n_t, 2 * n_t), real),
    )


def use_fourier(plan, f_in, f_out, parts, choice) -> bool:
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
    chi = jnp.asarray(complex_left(np.conj(dft), parts, 2), real)
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
    return complex_left(k, 2, 2)


def fourier_conv(a: jax.Array, kernels: tuple, plan: FourierPlan) -> jax.Array:
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


def embed(x: jax.Array, kernels: tuple, embed: np.ndarray, perms) -> jax.Array:
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
