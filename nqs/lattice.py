"""Lattices: Bravais lattices with a basis, their neighbour edges, and custom graphs.

Sites are numbered row-major over unit cells (last axis fastest) with the basis index
fastest of all: ``site = ((c_0 * L_1 + c_1) * L_2 + ...) * n_basis + b``, at position
``sum_a c_a basis_vectors[a] + site_offsets[b]``.

Edges of order k join the pairs of sites at the k-th smallest distinct distance (1 =
nearest neighbours). Along periodic axes the distance of two sites is the minimum-image
distance: the smallest length of ``r_j - r_i + sum_a t_a L_a basis_vectors[a]`` over
integer ``t_a`` (periodic axes only). Each unordered pair of sites is one edge at that
distance, so small periodic lattices have no duplicate bonds: a 2-site periodic chain
has the single edge (0, 1), and a 2x2 periodic square lattice has four nearest edges
(0,1), (0,2), (1,3), (2,3) and two next-nearest edges (0,3), (1,2).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
from collections.abc import Sequence

import numpy as np

_RTOL = 1e-8  # distances closer than this (relative to |a_max|) are one shell
_BLOCK = 512  # rows per block in the pairwise distance computation

#: Most sites a lattice may have. The neighbour search compares every pair of sites
#: (~1.5 s for 4096 sites on one core, growing as n_sites^2), and a variational state
#: on more sites than this does not fit one machine's memory anyway.
MAX_SITES = 4096


def check_size(n_sites: int) -> None:
    """Refuse a lattice of more than ``MAX_SITES`` sites before anything is built.

    Raises:
        ValueError: ``n_sites > MAX_SITES`` (the message gives both numbers).
    """
    if n_sites > MAX_SITES:
        raise ValueError(
            f"{n_sites:,} sites is more than the {MAX_SITES:,} nqs builds (the "
            f"neighbour search alone would take ~{_search_seconds(n_sites):.3g} s)"
        )


def _search_seconds(n_sites: int) -> float:
    """Rough time of the pairwise neighbour search (measured: 4096 sites, ~1.5 s)."""
    return 1.5 * (n_sites / 4096) ** 2


@dataclasses.dataclass(frozen=True)
class Lattice:
    """A finite lattice: geometry plus edges tagged with their neighbour order.

    Attributes:
        basis_vectors: (n_dim, n_dim) rows are the primitive vectors.
        site_offsets: (n_basis, n_dim) positions of the basis sites in the cell.
        extent: (n_dim,) number of cells per axis.
        pbc: (n_dim,) whether each axis is periodic.
        edges: ((i, j, order), ...) with i < j, sorted; order 1 = nearest neighbours.
        name: a label ("chain", "square", ..., "custom").
    """

    basis_vectors: tuple[tuple[float, ...], ...]
    site_offsets: tuple[tuple[float, ...], ...]
    extent: tuple[int, ...]
    pbc: tuple[bool, ...]
    edges: tuple[tuple[int, int, int], ...]
    name: str

    @property
    def n_dim(self) -> int:
        """Number of spatial dimensions."""
        return len(self.basis_vectors)

    @property
    def n_sites(self) -> int:
        """Number of sites, prod(extent) * n_basis."""
        return math.prod(self.extent) * len(self.site_offsets)

    @property
    def positions(self) -> np.ndarray:
        """(n_sites, n_dim) float64 site positions (in the unwrapped supercell)."""
        return _positions(
            np.asarray(self.basis_vectors, dtype=np.float64),
            np.asarray(self.site_offsets, dtype=np.float64),
            self.extent,
        )

    def edges_of_order(self, order: int = 1) -> tuple[tuple[int, int], ...]:
        """The (i, j) pairs, i < j, sorted, of the edges of one neighbour order."""
        return tuple((i, j) for i, j, k in self.edges if k == order)

    @property
    def bipartition(self) -> tuple[int, ...] | None:
        """0/1 sublattice of each site if the nearest-neighbour graph is bipartite.

        Breadth-first 2-colouring; each connected component starts with colour 0 at its
        smallest site. None if some nearest edge joins two sites of one colour.
        """
        neighbours = [[] for _ in range(self.n_sites)]
        for i, j in self.edges_of_order(1):
            neighbours[i].append(j)
            neighbours[j].append(i)
        colour = [-1] * self.n_sites
        for start in range(self.n_sites):
            if colour[start] >= 0:
                continue
            colour[start] = 0
            queue = collections.deque([start])
            while queue:
                i = queue.popleft()
                for j in neighbours[i]:
                    if colour[j] < 0:
                        colour[j] = 1 - colour[i]
                        queue.append(j)
                    elif colour[j] == colour[i]:
                        return None
        return tuple(colour)


def _positions(vectors: np.ndarray, offsets: np.ndarray, extent) -> np.ndarray:
    cells = np.array(list(itertools.product(*(range(n) for n in extent))), dtype=float)
    cells = cells.reshape(-1, len(extent))
    pos = (cells @ vectors)[:, None, :] + offsets[None, :, :]
    return pos.reshape(-1, vectors.shape[1])


def _as_pbc(pbc, n_dim: int) -> tuple[bool, ...]:
    if isinstance(pbc, (bool, np.bool_)):
        return (bool(pbc),) * n_dim
    try:
        pbc = tuple(pbc)
    except TypeError:
        raise ValueError(f"pbc must be a bool or {n_dim} bools, got {pbc!r}") from None
    if len(pbc) != n_dim or not all(isinstance(p, (bool, np.bool_)) for p in pbc):
        raise ValueError(f"pbc must be a bool or {n_dim} bools, got {pbc!r}")
    return tuple(bool(p) for p in pbc)


def _as_positive_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _as_matrix(value, name: str, n_cols: int | None) -> np.ndarray:
    try:
        mat = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a list of coordinate rows") from None
    if mat.ndim != 2 or mat.shape[0] == 0 or (n_cols and mat.shape[1] != n_cols):
        expected = f"rows of {n_cols} numbers" if n_cols else "a non-empty matrix"
        raise ValueError(f"{name} must be {expected}, got shape {mat.shape}")
    if not np.all(np.isfinite(mat)):
        raise ValueError(f"{name} must be finite")
    return mat


def _reduce(vectors: np.ndarray) -> np.ndarray:
    """Short, nearly orthogonal basis of the lattice spanned by the rows of ``vectors``.

    Pairwise (Lagrange-Gauss) size reduction until no vector gets shorter; exact in 2D.
    """
    vectors = vectors.copy()
    changed = True
    while changed:
        changed = False
        for a, b in itertools.permutations(range(len(vectors)), 2):
            step = round(vectors[b] @ vectors[a] / (vectors[a] @ vectors[a]))
            if step != 0:
                shorter = vectors[b] - step * vectors[a]
                if shorter @ shorter < vectors[b] @ vectors[b] * (1 - 1e-12):
                    vectors[b] = shorter
                    changed = True
    return vectors


def _min_image_distances(
    pos: np.ndarray, supercell: np.ndarray, pbc: tuple[bool, ...], rows: slice
) -> np.ndarray:
    """(len(rows), n_sites) minimum-image distances from sites ``rows`` to all sites.

    ``supercell`` (n_dim, n_dim) rows are ``extent[a] * basis_vectors[a]``. The
    periodic rows span the translations; in a reduced basis of them, each
    displacement is first moved by the translation nearest to it (rounded least
    squares coefficients), then the images t in {-1, 0, 1}^n_periodic are searched.
    """
    # one contiguous (block, n_sites) array per component: fast elementwise maths
    disp = [pos[None, :, c] - pos[rows, c, None] for c in range(pos.shape[1])]
    if not any(pbc):
        return np.sqrt(sum(x * x for x in disp))
    periods = _reduce(supercell[np.asarray(pbc)])
    # Babai rounding: subtract the nearest periodic translation (least squares)
    coefficients = np.linalg.pinv(periods)  # (n_dim, n_periodic)
    shifts = [
        np.round(sum(x * coefficients[c, a] for c, x in enumerate(disp)))
        for a in range(len(periods))
    ]
    disp = [
        x - sum(t * periods[a, c] for a, t in enumerate(shifts))
        for c, x in enumerate(disp)
    ]
    best = None
    for shift in itertools.product((-1, 0, 1), repeat=len(periods)):
        offset = np.asarray(shift, dtype=np.float64) @ periods
        sq = sum((x + o) ** 2 for x, o in zip(disp, offset, strict=True))
        best = sq if best is None else np.minimum(best, sq, out=best)
    return np.sqrt(best)


def _shell_bounds(levels: np.ndarray, max_order: int, tol: float) -> np.ndarray:
    """Upper bounds of the first ``max_order`` shells of sorted distinct distances;
    distances within ``tol`` of the previous one join its shell."""
    bounds = []
    for d in levels:
        if bounds and d <= bounds[-1] + tol:
            bounds[-1] = d
        elif len(bounds) < max_order:
            bounds.append(d)
        else:
            break
    return np.asarray(bounds)


def _neighbour_edges(pos, supercell, pbc, max_order: int, tol: float):
    """Edges (i, j, order), i < j, sorted, of the first max_order distance shells.

    Rows of the distance matrix are processed in blocks; only pairs within the
    current ``max_order``-th shell (which can only shrink) are kept.
    """
    n = len(pos)
    pair_i, pair_j, pair_d = [], [], []
    levels, cutoff = np.zeros(0), np.inf
    for start in range(0, n, _BLOCK):
        rows = slice(start, min(start + _BLOCK, n))
        dist = _min_image_distances(pos, supercell, pbc, rows)
        i, j = np.nonzero(np.triu(dist <= cutoff + tol, k=start + 1))
        d = dist[i, j]
        if d.size and d.min() <= tol:
            raise ValueError("site_offsets: two sites coincide (zero distance)")
        levels = np.unique(np.concatenate([levels, d]))
        bounds = _shell_bounds(levels, max_order, tol)
        if len(bounds) == max_order:
            cutoff = bounds[-1]
            levels = levels[levels <= cutoff + tol]
        keep = d <= cutoff + tol
        pair_i.append(i[keep] + start)
        pair_j.append(j[keep])
        pair_d.append(d[keep])
    pair_i, pair_j, pair_d = map(np.concatenate, (pair_i, pair_j, pair_d))
    order = np.searchsorted(_shell_bounds(levels, max_order, tol) + tol, pair_d) + 1
    keep = order <= max_order
    edges = zip(
        pair_i[keep].tolist(), pair_j[keep].tolist(), order[keep].tolist(), strict=True
    )
    return tuple(sorted(edges))


def bravais(
    basis_vectors: Sequence[Sequence[float]],
    site_offsets: Sequence[Sequence[float]],
    extent: Sequence[int],
    pbc: bool | Sequence[bool],
    max_order: int = 3,
    name: str = "bravais",
) -> Lattice:
    """A Bravais lattice with a basis and its neighbour edges up to ``max_order``.

    Args:
        basis_vectors: (n_dim, n_dim) primitive vectors as rows.
        site_offsets: (n_basis, n_dim) basis-site positions in the unit cell.
        extent: (n_dim,) cells per axis, each >= 1.
        pbc: periodic boundaries, one bool for all axes or one per axis.
        max_order: number of neighbour shells to turn into edges (>= 1).
        name: label stored on the lattice.
    Returns:
        The ``Lattice``; edges found geometrically with the minimum-image rule.
    Raises:
        ValueError: naming the bad parameter.
    """
    vectors = _as_matrix(basis_vectors, "basis_vectors", None)
    n_dim = vectors.shape[0]
    if vectors.shape[1] != n_dim:
        raise ValueError(
            f"basis_vectors must be square (n_dim x n_dim), got {vectors.shape}"
        )
    if abs(np.linalg.det(vectors)) < 1e-12 * max(1.0, np.abs(vectors).max()) ** n_dim:
        raise ValueError("basis_vectors must be linearly independent")
    offsets = _as_matrix(site_offsets, "site_offsets", n_dim)
    if isinstance(extent, (int, np.integer)):
        extent = (extent,)
    extent = tuple(extent)
    if len(extent) != n_dim:
        raise ValueError(
            f"extent must have one entry per basis vector ({n_dim}), got {list(extent)}"
        )
    extent = tuple(_as_positive_int(n, "extent") for n in extent)
    check_size(math.prod(extent) * len(offsets))
    pbc = _as_pbc(pbc, n_dim)
    max_order = _as_positive_int(max_order, "max_order")
    pos = _positions(vectors, offsets, extent)
    supercell = np.asarray(extent, dtype=np.float64)[:, None] * vectors
    tol = _RTOL * max(1.0, float(np.linalg.norm(vectors, axis=1).max()))
    return Lattice(
        basis_vectors=tuple(tuple(float(x) for x in row) for row in vectors),
        site_offsets=tuple(tuple(float(x) for x in row) for row in offsets),
        extent=extent,
        pbc=pbc,
        edges=_neighbour_edges(pos, supercell, pbc, max_order, tol),
        name=name,
    )


def _extent(extent, n_dim: int) -> tuple:
    """An int means the same number of cells along every axis."""
    if isinstance(extent, (int, np.integer)) and not isinstance(extent, bool):
        return (extent,) * n_dim
    return tuple(extent)


def chain(length: int, pbc: bool = True, max_order: int = 3) -> Lattice:
    """A chain of ``length`` sites with unit spacing."""
    length = _as_positive_int(length, "length")
    return bravais([[1.0]], [[0.0]], (length,), pbc, max_order, name="chain")


def square(extent, pbc=True, max_order: int = 3) -> Lattice:
    """A square lattice of Lx x Ly sites, unit spacing (``extent`` int or (Lx, Ly))."""
    extent = _extent(extent, 2)
    vectors = [[1.0, 0.0], [0.0, 1.0]]
    return bravais(vectors, [[0.0, 0.0]], extent, pbc, max_order, name="square")


def triangular(extent, pbc=True, max_order: int = 3) -> Lattice:
    """A triangular lattice, primitive vectors (1, 0) and (1/2, sqrt(3)/2)."""
    extent = _extent(extent, 2)
    vectors = [[1.0, 0.0], [0.5, math.sqrt(3) / 2]]
    return bravais(vectors, [[0.0, 0.0]], extent, pbc, max_order, name="triangular")


def honeycomb(extent, pbc=True, max_order: int = 3) -> Lattice:
    """A honeycomb lattice: 2 sites per cell, nearest-neighbour distance 1."""
    extent = _extent(extent, 2)
    s3 = math.sqrt(3)
    vectors = [[s3, 0.0], [s3 / 2, 1.5]]
    offsets = [[0.0, 0.0], [0.0, 1.0]]
    return bravais(vectors, offsets, extent, pbc, max_order, name="honeycomb")


def kagome(extent, pbc=True, max_order: int = 3) -> Lattice:
    """A kagome lattice: 3 sites per cell, nearest-neighbour distance 1."""
    extent = _extent(extent, 2)
    s3 = math.sqrt(3)
    vectors = [[2.0, 0.0], [1.0, s3]]
    offsets = [[0.0, 0.0], [1.0, 0.0], [0.5, s3 / 2]]
    return bravais(vectors, offsets, extent, pbc, max_order, name="kagome")


def custom(
    n_sites: int,
    edges: Sequence[Sequence[int]],
    positions: Sequence[Sequence[float]] | None = None,
) -> Lattice:
    """A lattice given by its edges: one open unit cell whose basis is every site.

    Args:
        n_sites: number of sites (>= 1).
        edges: (i, j) pairs (order 1) or (i, j, order) triples; (i, j) and (j, i) are
            the same edge and repeats are dropped.
        positions: (n_sites, n_dim) site coordinates; default site i at (i,).
    Returns:
        The ``Lattice`` named "custom".
    Raises:
        ValueError: bad index, self edge, order < 1 or conflicting orders of one pair.
    """
    n_sites = _as_positive_int(n_sites, "n_sites")
    check_size(n_sites)
    if positions is None:
        positions = [[float(i)] for i in range(n_sites)]
    pos = _as_matrix(positions, "positions", None)
    if pos.shape[0] != n_sites:
        raise ValueError(f"positions must have {n_sites} rows, got {pos.shape[0]}")
    orders: dict[tuple[int, int], int] = {}
    for edge in edges:
        edge = tuple(edge)
        if len(edge) not in (2, 3):
            raise ValueError(f"edges: each edge is (i, j) or (i, j, order), got {edge}")
        i, j = (_as_site(x, n_sites) for x in edge[:2])
        order = _as_positive_int(edge[2], "edges order") if len(edge) == 3 else 1
        if i == j:
            raise ValueError(f"edges: self edge ({i}, {j}) is not allowed")
        pair = (min(i, j), max(i, j))
        if orders.setdefault(pair, order) != order:
            raise ValueError(
                f"edges: pair {pair} is given with orders {orders[pair]} and {order}"
            )
    n_dim = pos.shape[1]
    return Lattice(
        basis_vectors=tuple(
            tuple(float(a == b) for b in range(n_dim)) for a in range(n_dim)
        ),
        site_offsets=tuple(tuple(float(x) for x in row) for row in pos),
        extent=(1,) * n_dim,
        pbc=(False,) * n_dim,
        edges=tuple(sorted((i, j, k) for (i, j), k in orders.items())),
        name="custom",
    )


def _as_site(value, n_sites: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"edges: site indices must be integers, got {value!r}")
    if not 0 <= value < n_sites:
        raise ValueError(f"edges: site index {value} is not in 0..{n_sites - 1}")
    return int(value)
