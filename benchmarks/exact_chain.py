"""Time exact diagonalisation of the periodic spin-1/2 Heisenberg chain (Sz = 0).

Usage: python benchmarks/exact_chain.py [L ...]      (default: 16 20 22)

For each length prints the time to build the sparse matrix (first call, including
compilation, and the median of repeats for L <= 20), the ground-state time, the total,
the number of stored entries, the energy and the energy per site, and the peak resident
memory of the process so far.
"""

import resource
import statistics
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

from nqs import exact, hamiltonian, lattice  # noqa: E402
from nqs.hilbert import Spin  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run(length: int) -> None:
    hilbert = Spin(length, total_sz=0)
    ham = hamiltonian.heisenberg(hilbert, lattice.chain(length), 1.0)
    matrix, build = timed(ham.to_sparse)
    repeats = 3 if length <= 20 else 1
    warm = [timed(ham.to_sparse)[1] for _ in range(repeats - 1)] or [build]
    (energies, _), solve = timed(lambda: exact.ground_state(matrix))
    solves = [solve] + [
        timed(lambda: exact.ground_state(matrix))[1] for _ in range(repeats - 1)
    ]
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"L={length:2d} states={hilbert.n_states:9d} nnz={matrix.nnz:10d} "
        f"build={build:6.2f}s (warm {statistics.median(warm):6.2f}s) "
        f"ground_state={statistics.median(solves):6.2f}s "
        f"total={build + solve:6.2f}s E0={energies[0]:.10f} "
        f"E0/L={energies[0] / length:.10f} peak_rss={peak_gb:.2f}GB",
        flush=True,
    )


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["16", "20", "22"]:
        run(int(arg))
