"""Symmetry sectors: momentum, irrep of the little group, spin flip.

Momentum: k = Σ_a (2π n_a / L_a) b_a with integers n_a (one per primitive axis, 0 on
open axes) and b_a the reciprocal vectors (b_a · a_c = δ_ac), so a translation by the
cell vector t has k·t = 2π Σ_a n_a t_a / L_a. Sign convention: a state of momentum k
transforms as U(T_t)|ψ⟩ = e^{-i k·t}|ψ⟩, i.e. χ_k(T_t) = exp(-i k·t), which is the
plane wave Σ_r e^{+i k·r}|r⟩ of one particle (U(T_t)|r⟩ = |r + t⟩).

Little group of k: the point elements p with χ_k(p⁻¹ T_t p) = χ_k(T_t) for all t
(p k ≡ k modulo the reciprocal lattice). For an irrep Γ of the little group P_k the
sector is the irrep χ(t p) = χ_k(T_t) χ_Γ(p) of T ⋊ P_k (space groups built here are
symmorphic). Enumerating every k (not one per star) and every Γ of its little group,
the sector projectors are orthogonal and add up to the identity.

Projector of a sector with elements g_m = t∘p (m < M = |T| |P_k|), characters χ_m,
irrep dimension d and spin flip s (None: no flip factor):

    P = (d / M) Σ_m conj(χ_m) U(g_m) · (1 + s F) / 2,

U(g)|σ⟩ = |g·σ⟩ as in ``group.py`` and F|σ⟩ = |-σ⟩ the global spin flip. On
amplitudes, with the gather convention of the stored ``perms``:

    (Pψ)(σ) = (d / M) Σ_m conj(χ_m) [ψ(σ[perms[m]]) + s ψ(-σ[perms[m]])] / 2.

For d > 1 this is the character projector: its range holds d copies of each
multiplet (the ED of one copy needs a row projector or divides degeneracies by d).
On tiny lattices (e.g. a 2-site chain) different (t, p) can give the same
permutation; ``perms`` keeps all M of them, and the formula stays exact.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nqs.lattice import Lattice
from nqs.symmetry.automorphism import automorphism_group
from nqs.symmetry.group import PermutationGroup, permutation_group
from nqs.symmetry.lattice_groups import (
    normalising_indices,
    point_group,
    schoenflies,
    space_group,
    translation_group,
    translation_vectors,
)

KINDS = ("translation", "point", "space")


@dataclasses.dataclass(frozen=True, eq=False)
class Sector:
    """A symmetry sector (static: hashable by content).

    Attributes:
        perms: (M, N) int64 site maps g_m = t∘p; gather ``sigma[..., perms[m]]``.
        characters: (M,) complex128 χ(g_m) = exp(-i k·t) χ_Γ(p).
        dim: dimension d of the irrep (of the little group).
        momentum: integers n per axis (k_a = 2π n_a / L_a); zeros for "point".
        irrep: label of the little-group irrep Γ ("A1", "E", ...).
        spin_flip: +1, -1 or None (no spin-flip factor).
        group: "translation", "point" or "space".
        little_group: the little group P_k (point elements fixing k).
        star: the momenta p·k over the point group (sorted, k included); sectors
            at each of them have the same spectrum.
    """

    perms: np.ndarray
    characters: np.ndarray
    dim: int
    momentum: tuple[int, ...]
    irrep: str
    spin_flip: int | None
    group: str
    little_group: PermutationGroup
    star: tuple[tuple[int, ...], ...]

    def _key(self):
        return (
            self.perms.tobytes(),
            self.characters.round(12).tobytes(),
            self.dim,
            self.momentum,
            self.irrep,
            self.spin_flip,
            self.group,
        )

    def __eq__(self, other) -> bool:
        return isinstance(other, Sector) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Sector({self.group}, momentum={list(self.momentum)}, "
            f"irrep={self.irrep!r}, spin_flip={self.spin_flip}, M={len(self.perms)})"
        )

    @property
    def label(self) -> dict:
        """{"momentum": [n...], "irrep": str, "spin_flip": ±1 or None}."""
        return {
            "momentum": list(self.momentum),
            "irrep": self.irrep,
            "spin_flip": self.spin_flip,
        }


def _groups(lattice: Lattice, kind: str, centre, strides):
    """(translation group, its cell vectors, point group) of a sector kind."""
    if kind not in KINDS:
        raise ValueError(f"group must be one of {', '.join(KINDS)}; got {kind!r}")
    identity = np.arange(lattice.n_sites)[None]
    trivial = permutation_group(identity, np.eye(lattice.n_dim)[None], "C1")
    if lattice.name == "custom":
        point = automorphism_group(lattice) if kind != "translation" else trivial
        zero = np.zeros((1, lattice.n_dim), dtype=np.int64)
        return permutation_group(identity, None, "translation"), zero, point
    if kind == "point":
        zero = np.zeros((1, lattice.n_dim), dtype=np.int64)
        return trivial, zero, point_group(lattice, centre)
    trans = translation_group(lattice, strides)
    vectors = translation_vectors(lattice, strides)
    if kind == "translation":
        return trans, vectors, trivial
    point = point_group(lattice, centre)
    keep = normalising_indices(point, trans)
    if len(keep) < point.order:
        linear = None if point.linear is None else point.linear[keep]
        name = point.name if linear is None else schoenflies(linear)
        point = permutation_group(point.perms[keep], linear, name, labels=True)
    return trans, vectors, point


def _momentum(lattice: Lattice, momentum, kind: str, strides) -> tuple[int, ...]:
    n_dim = lattice.n_dim
    if momentum is None:
        return (0,) * n_dim
    if isinstance(momentum, (int, np.integer)) and not isinstance(momentum, bool):
        momentum = (momentum,)
    momentum = tuple(momentum)
    if len(momentum) != n_dim or not all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in momentum
    ):
        raise ValueError(
            f"momentum must be {n_dim} integer(s) n (k = 2π n / extent), got "
            f"{list(momentum)}"
        )
    sizes = _sizes(lattice, kind, strides)
    for a, (n, size) in enumerate(zip(momentum, sizes, strict=True)):
        periodic = lattice.pbc[a] and _has_translations(lattice, kind)
        if not 0 <= n < size:
            why = (
                f"0..{size - 1} (extent {lattice.extent[a]})"
                if periodic
                else "0 (no translations along this axis for this group)"
            )
            raise ValueError(f"momentum[{a}] = {n} is not allowed: must be in {why}")
    return tuple(int(n) for n in momentum)


def _phase(lattice: Lattice, momentum, vectors: np.ndarray) -> np.ndarray:
    """(T,) complex128 χ_k(T_t) = exp(-2πi Σ_a n_a t_a / L_a)."""
    frac = (vectors * np.asarray(momentum)) / np.asarray(lattice.extent)
    frac = frac.sum(axis=1) % 1.0
    return np.exp(-2j * np.pi * frac)


def _conjugates(trans, point) -> np.ndarray:
    """(P, T) int64 index in T of p⁻¹ T_t p for every point element p."""
    where = {t.tobytes(): i for i, t in enumerate(trans.perms)}
    out = np.empty((point.order, trans.order), dtype=np.int64)
    for g, p in enumerate(point.perms):
        p_inv = point.perms[point.inverse[g]]
        out[g] = [where[p_inv[t[p]].tobytes()] for t in trans.perms]
    return out


def _little_group(lattice, momentum, trans, vectors, point) -> PermutationGroup:
    """Point elements p with χ_k(p⁻¹ T_t p) = χ_k(T_t) for every translation t."""
    phase = _phase(lattice, momentum, vectors)
    conj = _conjugates(trans, point)
    keep = np.flatnonzero(np.all(np.abs(phase[conj] - phase) < 1e-9, axis=1))
    if len(keep) == point.order:
        return point
    linear = None if point.linear is None else point.linear[keep]
    name = point.name if linear is None else schoenflies(linear)
    return permutation_group(point.perms[keep], linear, name, labels=True)


def _stars(lattice, kind, strides, trans, vectors, point) -> dict:
    """{momentum: sorted tuple of the momenta p·k over the point group}."""
    sizes = _sizes(lattice, kind, strides)
    momenta = [tuple(int(n) for n in m) for m in np.ndindex(*sizes)]
    phases = np.array([_phase(lattice, m, vectors) for m in momenta])  # (K, T)
    conj = _conjugates(trans, point)
    stars = {}
    for row, m in enumerate(momenta):
        # χ_{p·k}(t) = χ_k(p⁻¹ t p): the momentum whose phases match
        moved = phases[row][conj]  # (P, T)
        hits = np.all(np.abs(moved[:, None, :] - phases[None]) < 1e-9, axis=2)
        stars[m] = tuple(sorted({momenta[i] for i in np.flatnonzero(hits.any(0))}))
    return stars


def sector(
    lattice: Lattice,
    group: str = "space",
    momentum=None,
    irrep: str | None = None,
    spin_flip: int | None = None,
    *,
    centre=None,
    strides=None,
) -> Sector:
    """The sector (k, Γ[, s]) of a lattice symmetry group.

    Args:
        lattice: the lattice.
        group: "translation", "point" or "space" (custom lattices: "point" and
            "space" mean all graph automorphisms, "translation" the identity).
        momentum: integers n per axis, 0 <= n_a < L_a / stride_a; default all 0
            (must be 0 on open axes and for "point").
        irrep: label of an irrep of the little group of k; default the trivial one.
        spin_flip: +1 or -1 to add the global spin flip, None for no flip factor
            (whether the Hilbert space allows it is the caller's check).
        centre: fixed point of the point group (see ``point_group``).
        strides: translation strides (see ``translation_group``).
    Returns:
        The ``Sector``.
    Raises:
        ValueError: unknown group, momentum not allowed, irrep not of the little group
            (the message lists the valid ones), spin_flip not ±1/None.
    """
    trans, vectors, point = _groups(lattice, group, centre, strides)
    momentum = _momentum(lattice, momentum, group, strides)
    little = _little_group(lattice, momentum, trans, vectors, point)
    star = _stars(lattice, group, strides, trans, vectors, point)[momentum]
    args = (momentum, irrep, spin_flip, trans, vectors, little, star)
    return _sector(lattice, group, *args)


def _sector(lattice, group, momentum, irrep, spin_flip, trans, vectors, little, star):
    if spin_flip is not None and (
        isinstance(spin_flip, bool) or spin_flip not in (1, -1)
    ):
        raise ValueError(f"spin_flip must be +1, -1 or None, got {spin_flip!r}")
    if irrep is None:
        irrep = little.irrep_labels[0]
    if irrep not in little.irrep_labels:
        raise ValueError(
            f"irrep {irrep!r} is not an irrep of the little group {little.name} at "
            f"momentum {list(momentum)}; valid: {', '.join(little.irrep_labels)}"
        )
    row = little.irrep_labels.index(irrep)
    phase = _phase(lattice, momentum, vectors)  # (T,)
    chi_p = little.character(row)  # (P_k,)
    perms = trans.perms[:, little.perms].reshape(-1, lattice.n_sites)  # t[p[i]]
    characters = (phase[:, None] * chi_p[None, :]).reshape(-1)
    perms = np.ascontiguousarray(perms)
    perms.flags.writeable = False
    characters = np.ascontiguousarray(characters.astype(np.complex128))
    characters.flags.writeable = False
    return Sector(
        perms=perms,
        characters=characters,
        dim=little.irrep_dims[row],
        momentum=momentum,
        irrep=irrep,
        spin_flip=None if spin_flip is None else int(spin_flip),
        group=group,
        little_group=little,
        star=star,
    )


def all_sectors(
    lattice: Lattice,
    group: str = "space",
    spin_flip: bool = False,
    *,
    centre=None,
    strides=None,
    one_per_star: bool = False,
) -> tuple[Sector, ...]:
    """Every sector of the group: each allowed momentum, each irrep of its little
    group, and with ``spin_flip`` both parities.

    Momenta are in row-major order of n, irreps in the little group's order
    (trivial first), spin flip +1 before -1. Σ over the result of the projectors
    is the identity (so their traces add up to the full dimension). With
    ``one_per_star`` only the first momentum of each star is kept; then Σ
    ``len(s.star)`` · tr P_s is the full dimension.
    """
    trans, vectors, point = _groups(lattice, group, centre, strides)
    stars = _stars(lattice, group, strides, trans, vectors, point)
    out = []
    for momentum, star in stars.items():
        if one_per_star and star[0] != momentum:
            continue
        little = _little_group(lattice, momentum, trans, vectors, point)
        for irrep in little.irrep_labels:
            for flip in (1, -1) if spin_flip else (None,):
                args = (momentum, irrep, flip, trans, vectors, little, star)
                out.append(_sector(lattice, group, *args))
    return tuple(out)


def _has_translations(lattice: Lattice, kind: str) -> bool:
    return kind != "point" and lattice.name != "custom"


def _sizes(lattice: Lattice, kind: str, strides) -> tuple[int, ...]:
    """Number of allowed momenta n_a per axis (1 on axes without translations)."""
    steps = translation_vectors(lattice, strides)
    sizes = []
    for a in range(lattice.n_dim):
        periodic = lattice.pbc[a] and _has_translations(lattice, kind)
        sizes.append(len(np.unique(steps[:, a])) if periodic else 1)
    return tuple(sizes)


def group(lattice: Lattice, kind: str = "space", *, centre=None, strides=None):
    """The lattice's "translation", "point" or "space" group as a PermutationGroup.

    Custom lattices: "point" and "space" are all automorphisms of the edge-coloured
    graph, "translation" the identity alone.
    """
    if kind not in KINDS:
        raise ValueError(f"group must be one of {', '.join(KINDS)}; got {kind!r}")
    if lattice.name == "custom":
        if kind == "translation":
            return permutation_group(np.arange(lattice.n_sites)[None], None, kind)
        return automorphism_group(lattice)
    if kind == "translation":
        return translation_group(lattice, strides)
    if kind == "point":
        return point_group(lattice, centre)
    return space_group(lattice, centre, strides)
