"""Static index tables of a sector's group for the GCNN (``nqs.models.gcnn``).

``group_tables``: the product table, inverses, and the convolution and embedding
index tables, from the sector's site permutations. ``fourier_plan``: the group as
T ⋊ P (T the abelian normal subgroup of translations, P the point part), with the
characters of T and the action of P on its momenta, which the Fourier-basis
convolution of ``nqs.models.group_conv`` needs. numpy only, cached per sector.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from nqs.symmetry import character_table

__all__ = ["FourierPlan", "GroupTables", "fourier_plan", "group_tables"]


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


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
