"""Config → symmetry sectors: the ``[symmetry]`` sector of a config, checked against
its lattice, Hilbert space and Hamiltonian, and exact energies per sector.

Bad sectors are ``InputError`` naming the ``symmetry.*`` key: a momentum the extent
does not allow, an irrep not of the little group (the valid ones listed), a group or
spin flip that does not commute with the Hamiltonian.
"""

from __future__ import annotations

from nqs import symmetry
from nqs.config import Config
from nqs.errors import InputError

#: Groups tried, largest first, when no ``[symmetry]`` section names one.
GROUP_ORDER = ("space", "point", "translation")


def _check_commutes(group_kind: str, perms, ham, key: str = "symmetry.group") -> None:
    bad = symmetry.symmetry_violations(ham, perms)
    if bad:
        raise InputError(
            key,
            f"the {group_kind} group is not a symmetry of this Hamiltonian on this "
            f"lattice ({len(bad)} of {len(perms)} elements do not commute with it, "
            "e.g. open boundaries or edges that break it)",
        )


def _check_flip(spin_flip, ham) -> None:
    if spin_flip is not None and not symmetry.spin_flip_is_symmetry(ham):
        raise InputError(
            "symmetry.spin_flip",
            "the global spin flip does not commute with this Hamiltonian",
        )


def config_sector(cfg: Config, lat, ham) -> symmetry.Sector | None:
    """The ``Sector`` of ``cfg.symmetry`` (None without a ``[symmetry]`` section)."""
    sym = cfg.symmetry
    if sym is None:
        return None
    try:
        symmetry.sector(lat, sym.group, sym.momentum)
    except ValueError as err:
        raise InputError("symmetry.momentum", str(err)) from None
    try:
        sector = symmetry.sector(lat, sym.group, sym.momentum, sym.irrep, sym.spin_flip)
    except ValueError as err:
        raise InputError("symmetry.irrep", str(err)) from None
    _check_commutes(sym.group, sector.perms, ham)
    _check_flip(sym.spin_flip, ham)
    return sector


def largest_group(lat, ham) -> str:
    """The largest of space / point / translation that commutes with ``ham``."""
    for kind in GROUP_ORDER:
        try:
            perms = symmetry.group(lat, kind).perms
        except ValueError:
            continue
        if symmetry.is_symmetry(ham, perms):
            return kind
    return "translation"


def spin_flip_allowed(cfg: Config, ham) -> bool:
    """True if the global spin flip is a sector label here (spin-1/2, total_sz = 0,
    and it commutes with the Hamiltonian)."""
    hil = cfg.hilbert
    if not (hil.kind == "spin" and hil.s == 0.5 and hil.total_sz == 0):
        return False
    return symmetry.spin_flip_is_symmetry(ham)
