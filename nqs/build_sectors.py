"""Config → symmetry sectors: the ``[symmetry]`` sector of a config, checked against
its lattice, Hilbert space and Hamiltonian, and exact energies per sector.

Bad sectors are ``InputError`` naming the ``symmetry.*`` key: a momentum the extent
does not allow, an irrep not of the little group (the valid ones listed), a group or
spin flip that does not commute with the Hamiltonian.
"""

from __future__ import annotations

import time

import numpy as np

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


def _cycle_lengths(perm: np.ndarray) -> list[int]:
    seen = np.zeros(len(perm), bool)
    lengths = []
    for start in range(len(perm)):
        if not seen[start]:
            n, i = 0, start
            while not seen[i]:
                seen[i] = True
                i = perm[i]
                n += 1
            lengths.append(n)
    return lengths


def _fixed_points(perm: np.ndarray, n_up: int | None, flip: bool) -> int:
    """Spin-1/2 configurations (with ``n_up`` up spins if given) that the site map
    ``perm`` (times the global flip if ``flip``) leaves unchanged."""
    cycles = _cycle_lengths(perm)
    if flip:  # constant up to alternating signs on every cycle: even cycles only
        if any(c % 2 for c in cycles):
            return 0
        return 2 ** len(cycles)  # each alternating cycle has as many ups as downs
    if n_up is None:
        return 2 ** len(cycles)
    counts = np.zeros(len(perm) + 1, dtype=object)  # exact big integers
    counts[0] = 1
    for c in cycles:
        counts[c:] = counts[c:] + counts[:-c].copy()
    return int(counts[n_up])


def n_levels(sector, n_sites: int, n_up: int | None) -> int:
    """Number of multiplets (distinct levels counted with multiplicity) in a sector:
    (1/M) Σ_g conj(χ(g)) Fix(g), averaged with the flipped maps for a spin-flip
    sector. Fix(g) counts the configurations g leaves unchanged (cycle structure), so
    this costs O(M N) and works for irreps of any dimension."""
    return _character_count(sector.perms, sector.characters, sector.spin_flip, n_up)


def _character_count(perms, characters, spin_flip, n_up: int | None) -> int:
    """(1/M) Σ_g conj(χ(g)) Fix(g) [with (Fix(g) + s Fix(g F)) / 2 for a flip s]."""
    total = 0j
    for perm, chi in zip(perms, characters, strict=True):
        perm = np.asarray(perm)
        fixed = _fixed_points(perm, n_up, False)
        if spin_flip is not None:
            fixed = (fixed + spin_flip * _fixed_points(perm, n_up, True)) / 2
        total += np.conj(chi) * fixed
    return int(round(total.real / len(perms)))


def working_dimension(sector, n_sites: int, n_up: int | None) -> int:
    """Size of the basis the sector's ED works in: its number of levels for a
    one-dimensional irrep; for d > 1 the dimension of the one-dimensional sector of
    the subgroup it is reduced to (``exact_irrep.irrep_reduction``), which holds
    one state per multiplet (and those of the other irreps sharing that sector)."""
    if sector.dim == 1:
        return n_levels(sector, n_sites, n_up)
    from nqs import exact_irrep

    reduction = exact_irrep.irrep_reduction(sector)
    if reduction is None:
        return 0
    args = (reduction.perms, reduction.characters, reduction.spin_flip)
    return _character_count(*args, n_up)


#: Largest sector dimension diagonalised (a float64 Lanczos needs ~10 vectors of it,
#: the block matrix ~ n_conn entries per state).
MAX_SECTOR_DIMENSION = 20_000_000


def _built(cfg: Config):
    from nqs import build

    build.check_sites(cfg)
    lat = build.lattice(cfg)
    hil = build.hilbert(cfg, lat)
    ham = build.hamiltonian(cfg, hil, lat)
    if hil.local_size != 2:
        raise InputError(
            "symmetry", "exact diagonalisation in sectors needs spin 1/2 (two states)"
        )
    return lat, hil, ham


def _n_up(cfg: Config, n_sites: int) -> int | None:
    sz = cfg.hilbert.total_sz
    return None if sz is None else int(round(sz + n_sites / 2))


def _diagonalise(sector, hil, ham, n_up, k: int, conn=None) -> tuple[np.ndarray, int]:
    """Lowest ``k`` levels of one sector (each multiplet of a d-dimensional irrep
    once) and its number of levels.

    Raises:
        InputError: the basis the ED works in (``working_dimension``) has more than
            ``MAX_SECTOR_DIMENSION`` states.
    """
    from nqs import exact_sector

    levels = n_levels(sector, hil.n_sites, n_up)
    if levels == 0:
        return np.zeros(0), 0
    working = working_dimension(sector, hil.n_sites, n_up)
    if working > MAX_SECTOR_DIMENSION:
        basis = "" if sector.dim == 1 else f" (basis of {working:.4g} states)"
        raise InputError(
            "symmetry",
            f"sector dimension {levels:.4g}{basis} is too large for exact "
            f"diagonalisation (limit {MAX_SECTOR_DIMENSION:.4g})",
        )
    energies, dim = exact_sector.sector_ground_state(ham, hil, sector, k=k, conn=conn)
    return np.sort(np.real(np.asarray(energies))), dim


def exact_in_sector(cfg: Config, k: int = 2) -> dict:
    """Lowest energies in the ``[symmetry]`` sector of ``cfg``, for irreps of any
    dimension d (levels of a d > 1 irrep are d-fold degenerate multiplets, each
    counted once).

    Returns:
        {"energy", "energy_per_site", "dimension" (the sector's number of levels),
        "irrep_dimension" (d), "n_sites", "wall_time", "sector": {"group",
        "momentum", "irrep", "spin_flip"}, "group_order", and when the sector has two
        levels "first_excited_energy", "gap" (to the next multiplet)}.
    Raises:
        InputError: a bad sector (``config_sector``), one with no state, or one too
            large (``MAX_SECTOR_DIMENSION``).
    """
    start = time.perf_counter()
    lat, hil, ham = _built(cfg)
    sector = config_sector(cfg, lat, ham)
    energies, dim = _diagonalise(sector, hil, ham, _n_up(cfg, hil.n_sites), k)
    if dim == 0:
        raise InputError("symmetry", "this sector holds no state")
    out = {
        "energy": float(energies[0]),
        "energy_per_site": float(energies[0]) / hil.n_sites,
        "dimension": dim,
        "irrep_dimension": sector.dim,
        "n_sites": hil.n_sites,
        "sector": {"group": sector.group, **sector.label},
        "group_order": len(sector.perms),
    }
    if len(energies) > 1:
        out["first_excited_energy"] = float(energies[1])
        out["gap"] = float(energies[1] - energies[0])
    out["wall_time"] = time.perf_counter() - start
    return out


def run_exact_energy(cfg: Config, objs, max_levels: int) -> float | None:
    """The exact energy a VMC run in the ``[symmetry]`` sector stores in its log:
    the sector's lowest, or None when the sector has no state, a space that is not
    spin 1/2, or more than ``max_levels`` levels (or, for an irrep of dimension
    > 1, a working basis larger than that)."""
    sector = objs.sector
    if sector is None or objs.hilbert.local_size != 2:
        return None
    n_up = _n_up(cfg, objs.hilbert.n_sites)
    levels = n_levels(sector, objs.hilbert.n_sites, n_up)
    if levels == 0 or levels > max_levels:
        return None
    if working_dimension(sector, objs.hilbert.n_sites, n_up) > max_levels:
        return None
    energies, _ = _diagonalise(sector, objs.hilbert, objs.hamiltonian, n_up, 1)
    return float(energies[0])


def exact_all_sectors(cfg: Config) -> dict:
    """The lowest energy of every sector (one momentum per star: the others of the
    star have the same spectrum and are listed with it).

    The group is ``symmetry.group`` of the config, or without a ``[symmetry]`` section
    the largest that commutes with the Hamiltonian; the spin flip is a label when the
    config asks for it (``symmetry.spin_flip``) or, without a section, whenever it is
    a symmetry. Returns {"energy" (lowest over the sectors), "energy_per_site",
    "dimension" (of the whole space), "n_sites", "group", "group_order",
    "wall_time", "sectors": [{"momentum", "irrep", "spin_flip", "dimension",
    "irrep_dimension", "energy", "star"}, ...]}; a sector's "dimension" counts its
    levels (a multiplet of a d-dimensional irrep once), so Σ dimension ×
    irrep_dimension × len(star) is the dimension of the space.
    """
    start = time.perf_counter()
    lat, hil, ham = _built(cfg)
    sym = cfg.symmetry
    if sym is not None:
        kind, flip = sym.group, sym.spin_flip is not None
        config_sector(cfg, lat, ham)  # the group commutes with ham
    else:
        kind, flip = largest_group(lat, ham), spin_flip_allowed(cfg, ham)
    from nqs import exact_sector

    n_up = _n_up(cfg, hil.n_sites)
    conn = exact_sector.connections_fn(ham)  # one compilation for every sector
    rows = []
    for sector in symmetry.all_sectors(lat, kind, spin_flip=flip, one_per_star=True):
        energies, dim = _diagonalise(sector, hil, ham, n_up, 1, conn)
        if dim == 0:
            continue
        rows.append(
            {
                **sector.label,
                "dimension": dim,
                "irrep_dimension": sector.dim,
                "energy": float(energies[0]),
                "star": [list(m) for m in sector.star],
            }
        )
    lowest = min(r["energy"] for r in rows)
    return {
        "energy": lowest,
        "energy_per_site": lowest / hil.n_sites,
        "dimension": int(hil.n_states),
        "n_sites": hil.n_sites,
        "group": kind,
        "group_order": len(symmetry.group(lat, kind).perms) * (2 if flip else 1),
        "wall_time": time.perf_counter() - start,
        "sectors": rows,
    }


def describe(cfg: Config, objs) -> str | None:
    """One line on the ``[symmetry]`` sector for ``nqs check`` (None without one):
    group, its order, the sector label and its number of levels."""
    sector = config_sector(cfg, objs.lattice, objs.hamiltonian)
    if sector is None:
        return None
    n_up = None
    if objs.hilbert.local_size == 2:
        n_up = _n_up(cfg, objs.hilbert.n_sites)
    levels = n_levels(sector, objs.hilbert.n_sites, n_up)
    flip = "" if sector.spin_flip is None else f", spin flip {sector.spin_flip:+d}"
    return (
        f"{sector.group} group of order {len(sector.perms)}; sector momentum "
        f"{list(sector.momentum)}, irrep {sector.irrep} (dimension {sector.dim})"
        f"{flip}: {levels} levels"
    )
