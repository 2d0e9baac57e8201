"""Whether a site permutation is a symmetry of a ``LocalOperator``: U(g) H U(g)† = H.

U(g) H U(g)† is H with every term moved to the image sites (term on (i, j) →
(perms[g, i], perms[g, j])). Two sums of local terms are equal as operators iff
their canonical forms agree: each term is split, by partial traces and
inclusion-exclusion, into parts acting non-trivially on exactly each subset of its
sites (``X_A = Σ_{B ⊆ A} (-1)^{|A|-|B|} tr_{S∖B}(M) / d^{|S∖B|} ⊗ 1``), and the parts
are summed per subset of sites. Exact for any number of sites (no dense matrices).
"""

from __future__ import annotations

import itertools
import string

import numpy as np


def _sorted_term(sites, matrix: np.ndarray, d: int):
    """Sites sorted increasingly, the matrix's tensor factors reordered with them."""
    k = len(sites)
    order = np.argsort(sites)
    tensor = matrix.reshape((d,) * (2 * k))
    tensor = tensor.transpose(list(order) + [k + o for o in order])
    return tuple(int(sites[o]) for o in order), tensor


def _reduced(tensor: np.ndarray, k: int, keep: tuple[int, ...]) -> np.ndarray:
    """tr over the positions not in ``keep`` / d^(traced); axes (out keep, in keep)."""
    letters = string.ascii_letters
    out = [letters[p] for p in range(k)]
    inn = [letters[p] if p not in keep else letters[k + p] for p in range(k)]
    result = "".join(out[p] for p in keep) + "".join(inn[p] for p in keep)
    reduced = np.einsum("".join(out) + "".join(inn) + "->" + result, tensor)
    return reduced / tensor.shape[0] ** (k - len(keep))


def _embed(tensor: np.ndarray, inner: tuple[int, ...], outer: tuple[int, ...], d):
    """Tensor on positions ``inner`` ⊗ identity on the rest of ``outer``."""
    full = tensor
    rest = [p for p in outer if p not in inner]
    for _ in rest:
        full = np.multiply.outer(full, np.eye(d))
    # axes now: out inner, in inner, (out r, in r) per rest position
    n_in = len(inner)
    pos = list(inner) + rest
    out_axes = list(range(n_in)) + [2 * n_in + 2 * r for r in range(len(rest))]
    in_axes = list(range(n_in, 2 * n_in)) + [
        2 * n_in + 2 * r + 1 for r in range(len(rest))
    ]
    order = np.argsort([outer.index(p) for p in pos])
    return full.transpose([out_axes[o] for o in order] + [in_axes[o] for o in order])


def canonical_terms(terms, constant, d: int, perm=None) -> dict:
    """{sorted sites: (d^k, d^k) part acting non-trivially on exactly those sites}.

    Args:
        terms: ((sites, matrix), ...) as in ``LocalOperator.terms``.
        constant: the multiple of the identity.
        d: local dimension.
        perm: optional (N,) site map applied to every term's sites first.
    Returns:
        Parts keyed by sorted site tuples (``()`` holds the constant), with the
        tensor factors in the order of the sorted sites.
    """
    parts: dict[tuple[int, ...], np.ndarray] = {(): np.array([[complex(constant)]])}
    for sites, matrix in terms:
        sites = tuple(int(s) for s in sites)
        if perm is not None:
            sites = tuple(int(perm[s]) for s in sites)
        sites, tensor = _sorted_term(sites, np.asarray(matrix), d)
        k = len(sites)
        for size in range(k + 1):
            for a in itertools.combinations(range(k), size):
                part = np.zeros((d,) * (2 * size), dtype=np.complex128)
                for bsize in range(size + 1):
                    for b in itertools.combinations(a, bsize):
                        red = _reduced(tensor, k, b)
                        part = part + (-1) ** (size - bsize) * _embed(red, b, a, d)
                key = tuple(sites[p] for p in a)
                part = part.reshape(d**size, d**size)
                parts[key] = parts[key] + part if key in parts else part
    return parts


def _moved(parts: dict, perm: np.ndarray, d: int) -> dict:
    """Canonical form of U(g) op U(g)†: every part moved to its image sites."""
    out = {}
    for sites, matrix in parts.items():
        key, tensor = _sorted_term([int(perm[s]) for s in sites], matrix, d)
        out[key] = tensor.reshape(matrix.shape)
    return out


def symmetry_violations(op, perms, atol: float = 1e-10) -> tuple[int, ...]:
    """Indices g for which U(g) op U(g)† ≠ op.

    Args:
        op: ``nqs.operator.LocalOperator`` (uses ``terms``, ``constant``,
            ``hilbert.local_size``).
        perms: (G, N) site maps (a ``PermutationGroup.perms`` or ``Sector.perms``).
        atol: tolerance relative to the largest matrix element.
    Returns:
        The failing element indices (empty if every element is a symmetry).
    """
    d = op.hilbert.local_size
    ref = canonical_terms(op.terms, op.constant, d)
    scale = max([1.0] + [float(np.abs(m).max()) for m in ref.values()])
    ref = {k: m for k, m in ref.items() if np.abs(m).max() > atol * scale}
    bad = []
    for g, perm in enumerate(np.asarray(perms)):
        moved = _moved(ref, perm, d)
        if moved.keys() != ref.keys() or any(
            np.abs(moved[k] - ref[k]).max() > atol * scale for k in ref
        ):
            bad.append(g)
    return tuple(bad)


def is_symmetry(op, perms, atol: float = 1e-10) -> bool:
    """True if every site map in ``perms`` (G, N) commutes with ``op``."""
    return not symmetry_violations(op, perms, atol)


def spin_flip_is_symmetry(op, atol: float = 1e-10) -> bool:
    """True if the global flip F (m → -m on every site) commutes with ``op``.

    F reverses each site's local basis (local index k → d - 1 - k, the order of
    ``Spin`` values 2m = -2s..2s), hence a k-site matrix M becomes M[::-1, ::-1].
    Meant for spin spaces.
    """
    d = op.hilbert.local_size
    ref = canonical_terms(op.terms, op.constant, d)
    flipped = [(sites, np.asarray(m)[::-1, ::-1]) for sites, m in op.terms]
    moved = canonical_terms(flipped, op.constant, d)
    scale = max([1.0] + [float(np.abs(m).max()) for m in ref.values()])
    zero = np.zeros((1, 1))
    return all(
        np.abs(ref.get(k, zero) - moved.get(k, zero)).max() <= atol * scale
        for k in ref.keys() | moved.keys()
    )
