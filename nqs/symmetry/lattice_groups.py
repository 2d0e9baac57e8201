"""Symmetry groups of a ``nqs.lattice.Lattice``: translations, point group, space group.

Every element is a site map (``perms[g, i]`` = image of site i, see ``group.py``) and
is kept only if it is an automorphism of the lattice: it maps the edges of each
neighbour order onto edges of the same order. So a finite periodic lattice keeps only
the point operations its supercell allows (a 4x6 square lattice keeps C2v), and open
boundaries have no translations.

- ``translation_group``: T_t moves cell c to c + t (mod extent on periodic axes), t
  over the multiples of ``strides`` on periodic axes; the identity only if none.
- ``point_group``: rotations by multiples of 30° and mirrors with axes at multiples of
  15° (2-D), x → -x (1-D), about ``centre``; those that map sites onto sites and are
  automorphisms. Default centre: on periodic axes the candidate (basis site, bond
  middle, triangle or hexagon centre of the cell) with the largest group, so the
  hexagon centre for honeycomb and kagome; on open axes the centroid of the sites.
- ``space_group``: {t∘p}: p from the point group (those normalising T), then t.
- ``automorphism_group``: all automorphisms of the edge-coloured graph (backtracking
  with colour refinement), for custom lattices.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from nqs.lattice import Lattice
from nqs.symmetry.group import PermutationGroup, permutation_group

_MAX_AUTOMORPHISMS = 20000


def _edge_codes(lattice: Lattice) -> np.ndarray:
    n = lattice.n_sites
    e = np.asarray(lattice.edges, dtype=np.int64).reshape(-1, 3)
    return np.sort(e[:, 2] * n * n + e[:, 0] * n + e[:, 1])


def automorphism_mask(lattice: Lattice, perms) -> np.ndarray:
    """(G,) bool: whether each site map (G, N) sends every edge of order k to one.

    Args:
        lattice: the lattice whose edges (with their orders) must be preserved.
        perms: (G, N) integer site maps, ``perms[g, i]`` the image of site i.
    Returns:
        (G,) bool.
    """
    perms = np.asarray(perms, dtype=np.int64).reshape(-1, lattice.n_sites)
    n = lattice.n_sites
    e = np.asarray(lattice.edges, dtype=np.int64).reshape(-1, 3)
    a, b = perms[:, e[:, 0]], perms[:, e[:, 1]]
    codes = e[None, :, 2] * n * n + np.minimum(a, b) * n + np.maximum(a, b)
    return np.all(np.sort(codes, axis=1) == _edge_codes(lattice)[None, :], axis=1)


def translation_vectors(lattice: Lattice, strides=None) -> np.ndarray:
    """(T, n_dim) int64 cell translations t of the translation group, row 0 = 0.

    Raises:
        ValueError: strides of the wrong length, not positive, or not dividing the
            extent of a periodic axis.
    """
    n_dim = lattice.n_dim
    if strides is None:
        strides = (1,) * n_dim
    strides = tuple(strides) if not isinstance(strides, int) else (strides,) * n_dim
    if len(strides) != n_dim or not all(
        isinstance(s, (int, np.integer)) and s >= 1 for s in strides
    ):
        raise ValueError(f"strides must be {n_dim} positive integers, got {strides}")
    axes = []
    for length, periodic, s in zip(lattice.extent, lattice.pbc, strides, strict=True):
        if periodic and length % s:
            raise ValueError(f"stride {s} does not divide the extent {length}")
        axes.append(range(0, length, s) if periodic else range(1))
    return np.array(list(itertools.product(*axes)), dtype=np.int64).reshape(-1, n_dim)


def translation_perms(lattice: Lattice, vectors: np.ndarray) -> np.ndarray:
    """(T, N) site maps of the cell translations ``vectors`` (T, n_dim)."""
    extent = np.asarray(lattice.extent)
    n_basis = len(lattice.site_offsets)
    cells = np.array(list(itertools.product(*(range(n) for n in extent))))
    cells = cells.reshape(-1, len(extent))
    moved = (cells[None] + vectors[:, None, :]) % extent  # (T, n_cells, d)
    cell_idx = np.ravel_multi_index(np.moveaxis(moved, -1, 0), tuple(extent))
    sites = cell_idx[:, :, None] * n_basis + np.arange(n_basis)
    return sites.reshape(len(vectors), -1).astype(np.int64)


def translation_group(lattice: Lattice, strides=None) -> PermutationGroup:
    """Translations by multiples of ``strides`` cells along the periodic axes.

    Args:
        lattice: a Bravais lattice (a custom lattice has only the identity).
        strides: cells per step along each axis (default 1).
    Returns:
        The abelian ``PermutationGroup`` named "translation", elements in the order
        of ``translation_vectors``.
    """
    vectors = translation_vectors(lattice, strides)
    perms = translation_perms(lattice, vectors)
    if not np.all(automorphism_mask(lattice, perms)):
        raise ValueError("a lattice translation does not preserve the edges")
    eye = np.broadcast_to(np.eye(lattice.n_dim), (len(perms),) + (lattice.n_dim,) * 2)
    return permutation_group(perms, eye, name="translation", labels=False)


def _candidate_ops(n_dim: int) -> list[np.ndarray]:
    if n_dim == 1:
        return [np.eye(1), -np.eye(1)]
    if n_dim != 2:
        return [np.eye(n_dim), -np.eye(n_dim)]
    ops = []
    for m in range(12):  # rotations by 30° m
        c, s = math.cos(math.pi * m / 6), math.sin(math.pi * m / 6)
        ops.append(np.array([[c, -s], [s, c]]))
    for m in range(12):  # mirrors with the axis at 15° m
        c, s = math.cos(math.pi * m / 6), math.sin(math.pi * m / 6)
        ops.append(np.array([[c, s], [s, -c]]))
    return ops


def _site_map(lattice: Lattice, op: np.ndarray, centre: np.ndarray):
    """Site map of r → centre + op (r - centre), or None if not onto the sites."""
    vectors = np.asarray(lattice.basis_vectors)
    offsets = np.asarray(lattice.site_offsets)
    extent = np.asarray(lattice.extent)
    image = centre + (lattice.positions - centre) @ op.T  # (N, d)
    frac = (image[:, None, :] - offsets[None]) @ np.linalg.inv(vectors)  # (N, B, d)
    cells = np.round(frac)
    hit = np.all(np.abs(frac - cells) < 1e-6, axis=2)  # (N, B)
    if not np.all(hit.sum(axis=1) == 1):
        return None
    basis = np.argmax(hit, axis=1)
    cells = cells[np.arange(len(image)), basis].astype(np.int64)
    pbc = np.asarray(lattice.pbc)
    cells = np.where(pbc, cells % extent, cells)
    if np.any((cells < 0) | (cells >= extent)):
        return None
    perm = np.ravel_multi_index(cells.T, tuple(extent)) * len(offsets) + basis
    if len(np.unique(perm)) != len(perm):
        return None
    return perm.astype(np.int64)


def _point_ops(lattice: Lattice, centre: np.ndarray):
    perms, linear = [], []
    for op in _candidate_ops(lattice.n_dim):
        perm = _site_map(lattice, op, centre)
        if perm is not None and automorphism_mask(lattice, perm)[0]:
            perms.append(perm)
            linear.append(op)
    return np.array(perms), np.array(linear)


def default_centres(lattice: Lattice) -> list[np.ndarray]:
    """Candidate centres (Cartesian): basis sites, then cell fractions (1/2, 1/3).

    Open axes take the fractional coordinate of the centroid of all sites.
    """
    vectors = np.asarray(lattice.basis_vectors)
    inv = np.linalg.inv(vectors)
    centroid = lattice.positions.mean(axis=0) @ inv
    fracs = [np.asarray(o) @ inv for o in lattice.site_offsets]
    for f in itertools.product((0.0, 1 / 3, 1 / 2, 2 / 3), repeat=lattice.n_dim):
        fracs.append(np.asarray(f))
    pbc = np.asarray(lattice.pbc)
    centres = []
    for f in fracs:
        c = np.where(pbc, f, centroid) @ vectors
        if not any(np.allclose(c, other) for other in centres):
            centres.append(c)
    return centres


def _point_perms(lattice: Lattice, centre=None):
    if centre is not None:
        centre = np.asarray(centre, dtype=np.float64).reshape(lattice.n_dim)
        return _point_ops(lattice, centre)
    best = None
    for c in default_centres(lattice):
        found = _point_ops(lattice, c)
        if best is None or len(found[0]) > len(best[0]):
            best = found
    return best


def schoenflies(linear: np.ndarray) -> str:
    """Schoenflies symbol of a 1-D/2-D point group from its (G, d, d) linear parts."""
    if linear.shape[1] == 1:
        return "inversion" if len(linear) == 2 else "C1"
    n = int(sum(np.linalg.det(r) > 0 for r in linear))
    has_mirror = len(linear) > n
    if n == 1:
        return "Cs" if has_mirror else "C1"
    return f"C{n}v" if has_mirror else f"C{n}"


def point_group(lattice: Lattice, centre=None) -> PermutationGroup:
    """Rotations and mirrors about ``centre`` that are automorphisms of the lattice.

    Args:
        lattice: a Bravais lattice (for custom lattices see ``automorphism_group``).
        centre: (n_dim,) Cartesian fixed point; default as in the module docstring.
    Returns:
        ``PermutationGroup`` named by its Schoenflies symbol ("C4v", "C2v", ...), with
        Cartesian linear parts and Mulliken irrep labels.
    """
    perms, linear = _point_perms(lattice, centre)
    if len(np.unique(perms, axis=0)) < len(perms):
        # tiny lattice: distinct operations give one permutation, so the group is a
        # quotient of the geometric one; no geometric name or Mulliken labels
        return permutation_group(perms, None, name="point", labels=False)
    return permutation_group(perms, linear, name=schoenflies(linear))


def space_group(lattice: Lattice, centre=None, strides=None) -> PermutationGroup:
    """Translations ⋊ point group: every t∘p (p first), deduplicated.

    Point elements that do not normalise the translation group (possible with
    strides) are dropped.
    """
    trans = translation_group(lattice, strides)
    point = point_group(lattice, centre)
    keep = normalising_indices(point, trans)
    perms = trans.perms[:, point.perms[keep]].reshape(-1, lattice.n_sites)  # t[p[i]]
    linear = None
    if point.linear is not None:
        kept = point.linear[keep]
        linear = np.broadcast_to(kept, (len(trans.perms),) + kept.shape)
        linear = linear.reshape(-1, lattice.n_dim, lattice.n_dim)
    return permutation_group(perms, linear, name="space", labels=False)


def normalising_indices(point: PermutationGroup, trans: PermutationGroup) -> np.ndarray:
    """Indices of point elements p with p T p⁻¹ = T."""
    members = {t.tobytes() for t in trans.perms}
    keep = []
    for g, p in enumerate(point.perms):
        p_inv = point.perms[point.inverse[g]]
        keep.append(all(p[t[p_inv]].tobytes() in members for t in trans.perms))
    return np.flatnonzero(keep)
