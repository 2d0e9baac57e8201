"""Mulliken labels of the irreps of 1-D and 2-D point groups, read off the characters.

The group is recognised from its Cartesian linear parts (rotations by 2π m / n and
mirrors). Rules (textbook, e.g. Cotton, "Chemical Applications of Group Theory"):

- one dimension: identity only "A"; with the inversion x → -x: "A" (χ = +1), "B" (-1);
- 1-D irreps: "A" if χ(C_n) = +1, "B" if χ(C_n) = -1 (C_n the rotation by 2π/n); with
  mirrors a subscript "1" if χ(σ_v) = +1, else "2"; a group whose only non-trivial
  element is a mirror (Cs) has "A'" and "A''";
- 2-D irreps: "E" (or "E1", "E2", ... when there are several, m from
  χ(C_n) = 2 cos(2π m / n));
- complex pairs of 1-D irreps of C_n (no mirrors): "1E"/"2E" (χ(C_n) = e^{±2πi m/n}),
  with m appended when there are several pairs.

σ_v is the class of the mirror whose axis makes the smallest angle with the x axis
(the direction of the first primitive vector of the built-in lattices); σ_d the other.
For C6v of the triangular lattice σ_v contains the mirror y → -y, so B1 is even under
it; for C4v σ_v are the mirrors x → -x and y → -y and σ_d the diagonals.
"""

from __future__ import annotations

import math

import numpy as np


def _classify(r: np.ndarray):
    """('rot', angle) or ('mirror', axis angle in [0, π)) of a 2x2 orthogonal matrix."""
    if np.linalg.det(r) > 0:
        return "rot", math.atan2(r[1, 0], r[0, 0])
    return "mirror", (math.atan2(r[1, 0], r[0, 0]) / 2) % math.pi


def _labels_1d(chi, classes, linear) -> tuple[str, ...] | None:
    if len(classes) == 1:
        return ("A",)
    if len(classes) == 2 and linear[classes[1][0]][0, 0] < 0:
        return tuple("A" if c[1].real > 0 else "B" for c in chi)
    return None


def _labels_2d(chi, classes, linear) -> tuple[str, ...] | None:
    kinds = [_classify(linear[c[0]]) for c in classes]
    rot = [i for i, (kind, _) in enumerate(kinds) if kind == "rot"]
    n = sum(len(classes[i]) for i in rot)
    mirrors = [i for i, (kind, _) in enumerate(kinds) if kind == "mirror"]
    c_n = None
    if n > 1:
        hits = [
            i
            for i in rot
            for g in classes[i]
            if abs(_classify(linear[g])[1] - 2 * math.pi / n) < 1e-6
        ]
        if not hits:
            return None
        c_n = hits[0]
    sigma_v = None
    if mirrors:
        distance = []
        for i in mirrors:
            for g in classes[i]:
                axis = _classify(linear[g])[1]
                distance.append((round(min(axis, math.pi - axis), 9), axis, i))
        sigma_v = min(distance)[2]
    n_pairs = (n - 1) // 2
    out = []
    for row in chi:
        dim = round(row[0].real)
        if dim == 1 and n == 1:
            if sigma_v is None:
                out.append("A")
            else:
                out.append("A'" if row[sigma_v].real > 0 else "A''")
        elif dim == 1 and abs(row[c_n].imag) < 1e-8:
            letter = "A" if row[c_n].real > 0 else "B"
            sub = "" if sigma_v is None else ("1" if row[sigma_v].real > 0 else "2")
            out.append(letter + sub)
        elif dim == 1:
            m = round(math.atan2(row[c_n].imag, row[c_n].real) * n / (2 * math.pi))
            index = str(abs(m)) if n_pairs > 1 else ""
            out.append(("1E" if m > 0 else "2E") + index)
        elif dim == 2 and c_n is not None:
            m = round(math.acos(max(-1.0, min(1.0, row[c_n].real / 2))) * n / math.tau)
            out.append("E" if n_pairs == 1 else f"E{m}")
        else:
            return None
    return tuple(out)


def irrep_labels(chi, classes, linear) -> tuple[str, ...] | None:
    """Mulliken labels of the rows of ``chi``, or None if the group is not recognised.

    Args:
        chi: (n_irreps, n_classes) complex128 character table.
        classes: conjugacy classes (tuples of element indices).
        linear: (G, d, d) linear parts or None.
    Returns:
        Labels (distinct), or None when ``linear`` is missing, not faithful, not 1-D
        or 2-D, or the labels would repeat.
    """
    if linear is None:
        return None
    flat = np.round(linear.reshape(len(linear), -1), 6)
    if len(np.unique(flat, axis=0)) != len(linear):
        return None  # not a faithful point group (e.g. translations)
    dim = linear.shape[1]
    if dim == 1:
        labels = _labels_1d(chi, classes, linear)
    elif dim == 2:
        labels = _labels_2d(chi, classes, linear)
    else:
        labels = None
    if labels is None or len(set(labels)) != len(labels):
        return None
    return labels
