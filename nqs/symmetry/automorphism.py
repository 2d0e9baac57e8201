"""Automorphisms of a lattice's edge-coloured graph (custom lattices).

An automorphism is a site map π with colour(π(i), π(j)) = colour(i, j) for all pairs,
the colour being the edge's neighbour order (0 = no edge). Sites are first split by
colour refinement (1-dimensional Weisfeiler-Leman), then a depth-first search assigns
the sites in breadth-first order, each candidate checked against all sites already
placed. Meant for small graphs (up to a few tens of sites).
"""

from __future__ import annotations

import sys

import numpy as np

from nqs.lattice import Lattice
from nqs.symmetry.group import PermutationGroup, permutation_group


def _colour_matrix(lattice: Lattice) -> np.ndarray:
    n = lattice.n_sites
    colour = np.zeros((n, n), dtype=np.int64)
    for i, j, k in lattice.edges:
        colour[i, j] = colour[j, i] = k
    return colour


def _refine(colour: np.ndarray) -> np.ndarray:
    """(N,) stable colour-refinement class of each site."""
    n = len(colour)
    cls = np.zeros(n, dtype=np.int64)
    while True:
        pairs = [zip(colour[v].tolist(), cls.tolist(), strict=True) for v in range(n)]
        sig = [(int(cls[v]), tuple(sorted(pairs[v]))) for v in range(n)]
        names = {s: i for i, s in enumerate(sorted(set(sig)))}
        new = np.array([names[s] for s in sig], dtype=np.int64)
        if len(names) == len(np.unique(cls)):
            return new
        cls = new


def _bfs_order(colour: np.ndarray) -> np.ndarray:
    n, seen, order = len(colour), np.zeros(len(colour), bool), []
    for start in range(n):
        if seen[start]:
            continue
        seen[start], queue = True, [start]
        while queue:
            v = queue.pop(0)
            order.append(v)
            for u in np.flatnonzero((colour[v] > 0) & ~seen):
                seen[u] = True
                queue.append(int(u))
    return np.array(order, dtype=np.int64)


def automorphisms(lattice: Lattice, max_order: int = 20000) -> np.ndarray:
    """(G, N) int64 all automorphisms of the edge-coloured graph, identity first.

    Raises:
        ValueError: more than ``max_order`` automorphisms.
    """
    colour = _colour_matrix(lattice)
    cls = _refine(colour)
    order = _bfs_order(colour)
    n = lattice.n_sites
    image = np.full(n, -1, dtype=np.int64)
    used = np.zeros(n, dtype=bool)
    found: list[np.ndarray] = []

    def extend(pos: int) -> None:
        if pos == n:
            found.append(image.copy())
            if len(found) > max_order:
                raise ValueError(
                    f"the lattice graph has more than {max_order} automorphisms"
                )
            return
        v, placed = order[pos], order[:pos]
        cand = np.flatnonzero(~used & (cls == cls[v]))
        ok = np.all(colour[np.ix_(cand, image[placed])] == colour[v, placed], axis=1)
        for w in cand[ok]:
            image[v], used[w] = w, True
            extend(pos + 1)
            image[v], used[w] = -1, False

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * n + 100))
    try:
        extend(0)
    finally:
        sys.setrecursionlimit(limit)
    return np.array(found, dtype=np.int64)


def automorphism_group(lattice: Lattice, max_order: int = 20000) -> PermutationGroup:
    """All automorphisms of the edge-coloured graph as a group named "automorphism".

    Irrep labels are "G0" (trivial), "G1", ... (no geometry to name them by).
    """
    return permutation_group(
        automorphisms(lattice, max_order), None, name="automorphism", labels=False
    )
