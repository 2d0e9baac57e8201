"""Lattice symmetry groups as data: permutations, tables, characters and sectors.

    group = symmetry.group(lattice, "space")          # PermutationGroup
    sector = symmetry.sector(lattice, "space", momentum=(0, 0), irrep="A1")
    for s in symmetry.all_sectors(lattice, "space", spin_flip=True): ...

Conventions (details in the submodules):

- ``group.perms[g, i]`` is the image of site i under g; g acts on configurations by
  moving values with the sites, (g·σ)_{perms[g, i]} = σ_i, so ``σ[..., perms[g]]``
  is g⁻¹·σ, and ``perms[product[g, h]] = perms[g][perms[h]]``.
- Momentum k_a = 2π n_a / L_a in reciprocal-lattice coordinates; a state of
  momentum k has U(T_t)|ψ⟩ = e^{-i k·t}|ψ⟩.
- Sector projector: (Pψ)(σ) = (d / M) Σ_m conj(χ_m) ψ(σ[perms[m]]) (averaged with
  s ψ(-σ[perms[m]]) when ``spin_flip = s``).
- Irreps of point groups carry Mulliken labels computed from the characters.
"""

from nqs.symmetry.automorphism import automorphism_group, automorphisms
from nqs.symmetry.check import is_symmetry, spin_flip_is_symmetry, symmetry_violations
from nqs.symmetry.group import PermutationGroup, character_table, permutation_group
from nqs.symmetry.lattice_groups import (
    automorphism_mask,
    point_group,
    space_group,
    translation_group,
    translation_vectors,
)
from nqs.symmetry.sector import KINDS, Sector, all_sectors, group, sector

__all__ = [
    "KINDS",
    "PermutationGroup",
    "Sector",
    "all_sectors",
    "automorphism_group",
    "automorphism_mask",
    "automorphisms",
    "character_table",
    "group",
    "is_symmetry",
    "permutation_group",
    "point_group",
    "sector",
    "space_group",
    "spin_flip_is_symmetry",
    "symmetry_violations",
    "translation_group",
    "translation_vectors",
]
