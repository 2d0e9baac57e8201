"""Observables of ``[observables]`` tables, as ``LocalOperator``.

Spin convention: observables use the *normalised* spin components
``σ^a_i = S^a_i / s`` (the Pauli matrices for spin 1/2, as in ``ising``; eigenvalues in
[-1, 1] for any s).

Kinds (keys; operator):
    magnetization (axis = "z"):             (1/N) Σ_i σ^a_i
    staggered_magnetization (axis = "z"):   (1/N) Σ_i (-1)^{p_i} σ^a_i, p = bipartition
    correlation (i, j, axis = "z"):         σ^a_i σ^a_j
    structure_factor (q = [..], axis = "z"): (1/N) Σ_ij cos(q·(r_i − r_j)) σ^a_i σ^a_j
    custom (terms):                         Σ_t matrix_t acting on sites_t

``custom`` terms are tables ``{sites = [..], matrix = [[..]], matrix_imag = [[..]]}``
(``matrix_imag`` optional) with ``(d^k, d^k)`` matrices in the local-index basis of the
sites (local index 0 = smallest local value, e.g. spin down; first site most
significant). The structure factor uses ``cos`` because the sum over i, j of
``e^{iq·(r_i−r_j)}`` is symmetric, so it equals the Fourier sum exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from nqs import operator as ops
from nqs.errors import InputError

AXES = ("x", "y", "z")
KINDS = (
    "magnetization",
    "staggered_magnetization",
    "correlation",
    "structure_factor",
    "custom",
)


def _sigma(hilbert, site: int, axis: str) -> ops.LocalOperator:
    """Normalised spin component σ^a = S^a / s on ``site``."""
    s = getattr(hilbert, "s", None)
    if s is None:
        raise InputError("kind", "spin observables need a spin Hilbert space")
    if not isinstance(axis, str) or axis not in AXES:
        raise InputError("axis", f"must be one of {AXES}, got {axis!r}")
    fn = {"x": ops.spin_x, "y": ops.spin_y, "z": ops.spin_z}[axis]
    return fn(hilbert, site) * (1.0 / s)


def _site(value, n_sites: int, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(key, f"expected a site index, got {value!r}")
    if not 0 <= value < n_sites:
        raise InputError(key, f"{value} is not a site (0..{n_sites - 1})")
    return int(value)


def _real_array(value, key: str) -> np.ndarray:
    """A float array of finite numbers (booleans and strings refused)."""
    flat = value if isinstance(value, list | tuple) else [value]
    while any(isinstance(v, list | tuple) for v in flat):
        flat = [w for v in flat for w in (v if isinstance(v, list | tuple) else [v])]
    for v in flat:
        if isinstance(v, bool) or not isinstance(v, int | float | np.number):
            raise InputError(key, f"expected numbers, got {v!r}")
        if not math.isfinite(v):
            raise InputError(key, f"expected finite numbers, got {v}")
    try:
        return np.asarray(value, dtype=float)
    except ValueError as err:  # ragged nested lists
        raise InputError(key, f"expected a regular array of numbers ({err})") from err


def _check_keys(table: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    extra = sorted(set(table) - set(allowed) - {"kind"})
    if extra:
        raise InputError(
            extra[0], f"unknown key {extra[0]!r} (allowed: {', '.join(allowed)})"
        )


def _custom(table, hilbert) -> ops.LocalOperator:
    terms = table.get("terms")
    if not isinstance(terms, (list, tuple)) or not terms:
        raise InputError("terms", "custom observable needs a non-empty list 'terms'")
    d = hilbert.local_size
    total = None
    for k, term in enumerate(terms):
        if not isinstance(term, Mapping) or "sites" not in term or "matrix" not in term:
            raise InputError("terms", f"terms[{k}] needs 'sites' and 'matrix'")
        sites = term["sites"]
        sites = [sites] if isinstance(sites, int) else list(sites)
        sites = tuple(_site(s, hilbert.n_sites, "terms") for s in sites)
        if len(set(sites)) != len(sites):
            raise InputError("terms", f"terms[{k}].sites repeats sites {list(sites)}")
        mat = _real_array(term["matrix"], f"terms[{k}].matrix")
        if "matrix_imag" in term:
            mat = mat + 1j * _real_array(term["matrix_imag"], f"terms[{k}].matrix_imag")
        dim = d ** len(sites)
        if mat.shape != (dim, dim):
            raise InputError(
                "terms",
                f"terms[{k}].matrix has shape {list(mat.shape)}, expected "
                f"[{dim}, {dim}] for {len(sites)} site(s) of local dimension {d}",
            )
        op = ops.local_operator(hilbert, sites, mat)
        total = op if total is None else total + op
    return total


def build_observable(table: Mapping[str, Any], hilbert, lattice) -> ops.LocalOperator:
    """The operator an ``[observables]`` entry describes (see the module docstring).

    Args:
        table: {"kind": ..., other keys}.
        hilbert: ``nqs.hilbert`` space.
        lattice: ``nqs.lattice.Lattice`` (positions, bipartition).
    Raises:
        InputError: (a ``ValueError``) unknown kind, unknown or bad key (``key``
            names it within the table, e.g. "q", "axis", "i").
    """
    kind = table.get("kind")
    if kind not in KINDS:
        raise InputError("kind", f"must be one of {KINDS}, got {kind!r}")
    n = hilbert.n_sites
    axis = table.get("axis", "z")
    if kind == "custom":
        _check_keys(table, ("terms",))
        return _custom(table, hilbert)
    if kind == "magnetization":
        _check_keys(table, ("axis",))
        return sum((_sigma(hilbert, i, axis) for i in range(n)), start=0.0) * (1 / n)
    if kind == "staggered_magnetization":
        _check_keys(table, ("axis",))
        parts = lattice.bipartition
        if parts is None:
            raise InputError(
                "kind", "staggered magnetization needs a bipartite lattice"
            )
        terms = ((1 - 2 * parts[i]) * _sigma(hilbert, i, axis) for i in range(n))
        return sum(terms, start=0.0) * (1 / n)
    if kind == "correlation":
        _check_keys(table, ("i", "j", "axis"))
        i = _site(table.get("i"), n, "i")
        j = _site(table.get("j"), n, "j")
        return _sigma(hilbert, i, axis) @ _sigma(hilbert, j, axis)
    _check_keys(table, ("q", "axis"))
    pos = np.asarray(lattice.positions, dtype=float)
    q = _real_array(table.get("q", ()), "q").reshape(-1)
    if q.shape != (pos.shape[1],):
        raise InputError(
            "q", f"expected {pos.shape[1]} components, got {table.get('q')!r}"
        )
    sig = [_sigma(hilbert, i, axis) for i in range(n)]
    total = 0.0
    for i in range(n):
        for j in range(n):
            c = float(np.cos(q @ (pos[i] - pos[j])))
            if abs(c) > 1e-14:
                total = total + c * (sig[i] @ sig[j])
    return total * (1 / n)
