"""Time sector exact diagonalisation on the standard scale workloads.

    python benchmarks/exact_sectors.py chain 28      # Heisenberg chain, k=0, P=+1, Z=+1
    python benchmarks/exact_sectors.py j1j2 4 6      # 4x6 J1-J2 (J2=0.5), k=0, Z=+1
    python benchmarks/exact_sectors.py j1j2 4 6 space  # same, A1 of the point group

Prints the sector dimension, the lowest energy and the wall time of each stage; run
under ``/usr/bin/time -v`` for the whole process's time and peak memory.
"""

from __future__ import annotations

import sys
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from nqs import hamiltonian, hilbert, lattice, symmetry  # noqa: E402
from nqs.exact import ground_state  # noqa: E402
from nqs.exact_sector import sector_basis, sector_matrix  # noqa: E402


def chain_group(n: int) -> np.ndarray:
    """Translations and inversion of an n-site ring: (M = 2n, n) site permutations."""
    sites = np.arange(n)
    trans = np.array([(sites + t) % n for t in range(n)])
    return np.concatenate([trans, trans[:, ::-1]])


def torus_translations(lx: int, ly: int) -> np.ndarray:
    """Translations of an lx x ly torus, site index x * ly + y (nqs.lattice order)."""
    x, y = np.divmod(np.arange(lx * ly), ly)
    return np.array(
        [((x + a) % lx) * ly + (y + b) % ly for a in range(lx) for b in range(ly)]
    )


def run(ham, space, perms, spin_flip, characters=None) -> None:
    t0 = time.perf_counter()
    if characters is None:
        characters = np.ones(len(perms))
    basis = sector_basis(space, perms, characters, spin_flip)
    t1 = time.perf_counter()
    matrix = sector_matrix(ham, basis)
    t2 = time.perf_counter()
    energies, _ = ground_state(matrix, k=1)
    t3 = time.perf_counter()
    print(f"dimension {basis.dimension}  nnz {matrix.nnz}  energy {energies[0]:.12f}")
    print(f"basis {t1 - t0:.1f} s  matrix {t2 - t1:.1f} s  lanczos {t3 - t2:.1f} s")


def main(argv: list[str]) -> None:
    kind = argv[0] if argv else "chain"
    if kind == "chain":
        n = int(argv[1]) if len(argv) > 1 else 28
        space = hilbert.Spin(n, total_sz=0)
        ham = hamiltonian.heisenberg(space, lattice.chain(n), 1.0)
        run(ham, space, chain_group(n), 1)
    elif kind == "j1j2":
        lx, ly = (int(a) for a in argv[1:3]) if len(argv) > 2 else (4, 6)
        space = hilbert.Spin(lx * ly, total_sz=0)
        lat = lattice.square((lx, ly))
        ham = hamiltonian.j1j2(space, lat, 1.0, 0.5)
        group = argv[3] if len(argv) > 3 else "translation"
        if group == "translation":
            run(ham, space, torus_translations(lx, ly), 1)
        else:  # nqs.symmetry's sector: k = 0, trivial irrep of the point group
            sec = symmetry.sector(lat, group, spin_flip=1)
            print(f"{sec!r}")
            run(ham, space, sec.perms, sec.spin_flip, sec.characters)
    else:
        raise SystemExit(f"unknown workload {kind!r} (chain | j1j2)")


if __name__ == "__main__":
    main(sys.argv[1:])
