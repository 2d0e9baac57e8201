"""Finite permutation groups of lattice sites with their tables and character table.

Convention: element g maps site i to site ``perms[g, i]``. It acts on a configuration
by moving the value of every site along with it, (g·σ)_{perms[g, i]} = σ_i, i.e.
``g·σ = σ[..., inverse_perm]``, and the gather ``σ[..., perms[g]]`` is g⁻¹·σ. The
operator U(g)|σ⟩ = |g·σ⟩ is then a representation: U(g)U(h) = U(gh) with
``perms[product[g, h]] = perms[g][perms[h]]`` (h first, then g).

The character table is computed (Burnside's algorithm): the class-sum structure
constants a_ijk give matrices M_i with (M_i)_jk = a_ijk whose common right eigenvectors
are the central characters ω_k = |C_k| χ(C_k) / d; d follows from the normalisation
Σ_k |C_k| |χ(C_k)|² = |G|. See Burnside, "Theory of groups of finite order" (1911),
§223.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nqs.symmetry.labels import irrep_labels

_TOL = 1e-8


@dataclasses.dataclass(frozen=True, eq=False)
class PermutationGroup:
    """A group of site permutations with its tables (static: hashable by content).

    Attributes:
        perms: (G, N) int64, element g maps site i to ``perms[g, i]``; row 0 is the
            identity.
        linear: (G, d, d) float64 Cartesian linear part of each element (rotation or
            mirror of a point operation, identity for translations), or None.
        product: (G, G) int64, ``perms[product[g, h]] = perms[g][perms[h]]``.
        inverse: (G,) int64 index of g⁻¹.
        classes: conjugacy classes as tuples of element indices; class 0 = {identity}.
        class_of: (G,) int64 class index of each element.
        characters: (n_irreps, n_classes) complex128 character table; row 0 trivial.
        irrep_dims: dimension of each irrep.
        irrep_labels: label of each irrep (Mulliken for point groups, else "G0", ...).
        name: a label ("translation", "point", "space", "C4v", ...).
    """

    perms: np.ndarray
    linear: np.ndarray | None
    product: np.ndarray
    inverse: np.ndarray
    classes: tuple[tuple[int, ...], ...]
    class_of: np.ndarray
    characters: np.ndarray
    irrep_dims: tuple[int, ...]
    irrep_labels: tuple[str, ...]
    name: str

    identity = 0  # index of the identity element

    @property
    def order(self) -> int:
        """|G|."""
        return len(self.perms)

    @property
    def n_sites(self) -> int:
        """N, the number of permuted sites."""
        return self.perms.shape[1]

    def _key(self):
        lin = None if self.linear is None else self.linear.round(9).tobytes()
        return (self.perms.shape, self.perms.tobytes(), lin)

    def __eq__(self, other) -> bool:
        return isinstance(other, PermutationGroup) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"PermutationGroup({self.name!r}, order={self.order}, N={self.n_sites})"

    def character(self, irrep: str | int) -> np.ndarray:
        """(G,) complex128 character χ(g) of one irrep (label or row index)."""
        if isinstance(irrep, str):
            if irrep not in self.irrep_labels:
                raise ValueError(
                    f"irrep {irrep!r} is not an irrep of {self.name}; valid: "
                    + ", ".join(self.irrep_labels)
                )
            irrep = self.irrep_labels.index(irrep)
        return self.characters[irrep][self.class_of]


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


def _base(perms: np.ndarray) -> np.ndarray:
    """Sites whose images tell all elements apart (greedy), as an index array."""
    n_elem, n_sites = perms.shape
    codes = np.zeros(n_elem, dtype=np.int64)
    base, n_distinct = [], 1
    for site in range(n_sites):
        if n_distinct == n_elem:
            break
        trial = codes * n_sites + perms[:, site]
        count = len(np.unique(trial))
        if count > n_distinct:
            if n_sites ** (len(base) + 1) >= 2**62:
                raise ValueError("group too large to index by a base of sites")
            base.append(site)
            codes, n_distinct = trial, count
    return np.asarray(base, dtype=np.int64)


def _encode(images: np.ndarray, n_sites: int) -> np.ndarray:
    codes = np.zeros(images.shape[:-1], dtype=np.int64)
    for c in range(images.shape[-1]):
        codes = codes * n_sites + images[..., c]
    return codes


def _product_table(perms: np.ndarray) -> np.ndarray:
    """(G, G) index of perms[g][perms[h]]; ValueError if the set is not closed."""
    n_elem, n_sites = perms.shape
    base = _base(perms)
    codes = _encode(perms[:, base], n_sites)
    order = np.argsort(codes)
    sorted_codes = codes[order]
    table = np.empty((n_elem, n_elem), dtype=np.int64)
    images_h = perms[:, base]  # (G, b)
    for g in range(n_elem):
        key = _encode(perms[g][images_h], n_sites)
        pos = np.minimum(np.searchsorted(sorted_codes, key), n_elem - 1)
        idx = order[pos]
        if not np.array_equal(perms[idx], perms[g][perms]):
            raise ValueError("the permutations are not closed under composition")
        table[g] = idx
    return table


def _conjugacy_classes(product: np.ndarray, inverse: np.ndarray):
    n_elem = len(product)
    class_of = np.full(n_elem, -1, dtype=np.int64)
    classes = []
    for g in range(n_elem):
        if class_of[g] >= 0:
            continue
        members = np.unique(product[product[:, g], inverse])  # x g x⁻¹
        class_of[members] = len(classes)
        classes.append(tuple(int(m) for m in members))
    return tuple(classes), class_of


def _clean(values: np.ndarray) -> np.ndarray:
    """Round to 1e-10, snap near-integers, drop -0.0."""
    re, im = np.round(values.real, 10), np.round(values.imag, 10)
    re = np.where(np.abs(re - np.round(re)) < _TOL, np.round(re), re)
    im = np.where(np.abs(im - np.round(im)) < _TOL, np.round(im), im)
    return (re + 0.0) + 1j * (im + 0.0)


def _structure_matrices(product, inverse, classes, class_of) -> np.ndarray:
    """(r, r, r) a[i, j, k] = #{x in C_i : x⁻¹ z_k in C_j} for a fixed z_k in C_k."""
    r = len(classes)
    a = np.zeros((r, r, r))
    for k, members in enumerate(classes):
        y = product[inverse, members[0]]  # x⁻¹ z for every x
        np.add.at(a[:, :, k], (class_of, class_of[y]), 1.0)
    return a


def character_table(product, inverse, classes, class_of) -> np.ndarray:
    """(n_classes, n_classes) complex128 irreducible characters, rows = irreps.

    Common eigenvectors of the class matrices M_i (deterministic combination
    Σ c_i M_i with distinct eigenvalues), scaled to ω(identity) = 1, then
    χ(C_k) = d ω_k / |C_k| with d² = |G| / Σ_k |ω_k|² / |C_k|.
    """
    n_elem, r = len(product), len(classes)
    sizes = np.array([len(c) for c in classes], dtype=np.float64)
    a = _structure_matrices(product, inverse, classes, class_of)
    for attempt in range(20):
        coeff = np.cos(1.0 + 0.7 * attempt + np.sqrt(np.arange(r) + 2.0) * 2.3)
        evals, vecs = np.linalg.eig(np.tensordot(coeff, a, axes=1))
        gaps = np.abs(evals[:, None] - evals[None, :]) + np.eye(r)
        if r > 1 and gaps.min() < 1e-6 * max(1.0, np.abs(evals).max()):
            continue
        omega = (vecs / vecs[0]).T  # (irrep, class)
        # M_i ω = ω_i ω: Σ_k a_ijk ω_k = ω_i ω_j for every irrep
        residual = np.einsum("ijk,ck->cij", a, omega)
        residual = residual - omega[:, :, None] * omega[:, None, :]
        if np.abs(residual).max() < 1e-6 * n_elem:
            break
    else:
        raise RuntimeError("character table: no separating class combination found")
    dims = np.sqrt(n_elem / (np.abs(omega) ** 2 / sizes).sum(axis=1))
    chi = _clean(np.round(dims)[:, None] * omega / sizes[None, :])
    if not np.allclose(np.round(dims), dims, atol=1e-6):
        raise RuntimeError("character table: non-integer irrep dimension")
    return chi


def _sort_irreps(chi: np.ndarray) -> np.ndarray:
    trivial = np.all(np.abs(chi - 1) < _TOL, axis=1)
    keys = [
        (not trivial[i], round(chi[i, 0].real), -round(chi[i].real.sum(), 6), i)
        for i in range(len(chi))
    ]
    return np.array([k[-1] for k in sorted(keys)])


def permutation_group(
    perms, linear=None, name: str = "group", labels: bool = True
) -> PermutationGroup:
    """Build a group from its elements: dedupe, identity first, tables, characters.

    Args:
        perms: (G, N) integer site maps (each row a permutation of 0..N-1), closed
            under composition; repeated rows are kept once (the first).
        linear: optional (G, d, d) linear parts, reordered along with ``perms``.
        name: label of the group.
        labels: Mulliken labels when the linear parts are a faithful 1-D/2-D point
            group; otherwise (or if False) "G0", "G1", ... with G0 trivial.
    Returns:
        The ``PermutationGroup``.
    Raises:
        ValueError: a row is not a permutation, or the rows are not closed.
    """
    perms = np.asarray(perms, dtype=np.int64)
    if perms.ndim != 2 or perms.shape[0] == 0:
        raise ValueError(f"perms must be a non-empty (G, N) array, got {perms.shape}")
    n_sites = perms.shape[1]
    if not np.all(np.sort(perms, axis=1) == np.arange(n_sites)):
        raise ValueError("every row of perms must be a permutation of 0..N-1")
    _, first = np.unique(perms, axis=0, return_index=True)
    keep = np.sort(first)
    ident = np.flatnonzero(np.all(perms[keep] == np.arange(n_sites), axis=1))
    if len(ident) == 0:
        raise ValueError("the permutations are not a group: no identity")
    keep = np.concatenate([keep[ident], np.delete(keep, ident)])
    perms = perms[keep]
    if linear is not None:
        linear = np.asarray(linear, dtype=np.float64)[keep]
    product = _product_table(perms)
    inverse = np.argmax(product == 0, axis=1).astype(np.int64)
    classes, class_of = _conjugacy_classes(product, inverse)
    chi = character_table(product, inverse, classes, class_of)
    chi = chi[_sort_irreps(chi)]
    dims = tuple(int(round(c.real)) for c in chi[:, 0])
    if sum(d * d for d in dims) != len(perms):
        raise RuntimeError("character table: Σ dim² differs from the group order")
    names = irrep_labels(chi, classes, linear) if labels else None
    if names is None:
        names = tuple(f"G{i}" for i in range(len(chi)))
    else:  # trivial first, then by dimension and label (A1, A2, B1, ..., E1, E2)
        rows = sorted(range(len(chi)), key=lambda i: (i > 0, dims[i], names[i]))
        chi, names = chi[rows], tuple(names[i] for i in rows)
        dims = tuple(dims[i] for i in rows)
    return PermutationGroup(
        perms=_readonly(perms),
        linear=None if linear is None else _readonly(linear),
        product=_readonly(product),
        inverse=_readonly(inverse),
        classes=classes,
        class_of=_readonly(class_of),
        characters=_readonly(chi),
        irrep_dims=dims,
        irrep_labels=tuple(names),
        name=name,
    )
