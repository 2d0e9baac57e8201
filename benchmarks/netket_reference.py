"""Time per VMC step of NetKet on the two standard workloads, for comparison.

Usage (NetKet in its own virtual environment, never in nqs's)::

    python -m venv /tmp/nk && /tmp/nk/bin/pip install netket
    OPENBLAS_NUM_THREADS=1 /tmp/nk/bin/python benchmarks/netket_reference.py

The workloads are those of ``nqs bench tfim_chain heisenberg_chain`` with the same
settings: RBM (real parameters; alpha 1 on the TFIM chain L=20, alpha 2 on the
Heisenberg chain L=22 in the S^z = 0 sector with the Marshall sign rule), 16
chains, 1024 samples, 16 discarded sweeps per chain, one sweep (n_sites proposals)
between samples, SGD with learning rate 0.05, SR with diagonal shift 0.01 and
NetKet's default solver. Each workload runs 3 warm-up steps (compilation), then
``--repeats`` blocks of ``--steps`` steps through ``VMC.run``; the time per step of
each block is printed with the median. NetKet's Heisenberg uses Pauli matrices
(4x our energy scale); the cost per step is the same.
"""

from __future__ import annotations

import argparse
import statistics
import time


def driver(name: str):
    import netket as nk

    if name == "tfim_chain":
        graph = nk.graph.Chain(20, pbc=True)
        hilbert = nk.hilbert.Spin(0.5, N=20)
        hamiltonian = nk.operator.IsingJax(hilbert, graph, h=1.0, J=-1.0)
        model = nk.models.RBM(alpha=1, param_dtype=float)
        sampler = nk.sampler.MetropolisLocal(hilbert, n_chains=16)
    elif name == "heisenberg_chain":
        graph = nk.graph.Chain(22, pbc=True)
        hilbert = nk.hilbert.Spin(0.5, N=22, total_sz=0)
        hamiltonian = nk.operator.Heisenberg(hilbert, graph, sign_rule=True)
        model = nk.models.RBM(alpha=2, param_dtype=float)
        sampler = nk.sampler.MetropolisExchange(hilbert, graph=graph, n_chains=16)
    else:
        raise SystemExit(f"unknown workload {name!r}")
    state = nk.vqs.MCState(
        sampler, model, n_samples=1024, n_discard_per_chain=16, seed=1, sampler_seed=2
    )
    return state, nk.driver.VMC(
        hamiltonian,
        nk.optimizer.Sgd(0.05),
        variational_state=state,
        preconditioner=nk.optimizer.SR(diag_shift=0.01),
    )


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import netket as nk

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["tfim_chain", "heisenberg_chain"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"netket {nk.__version__}, jax {jax.__version__}, {jax.devices()}")
    for name in args.names:
        state, vmc = driver(name)
        start = time.perf_counter()
        vmc.run(3, out=None, show_progress=False)
        jax.block_until_ready(state.parameters)
        warmup = time.perf_counter() - start
        per_step = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            vmc.run(args.steps, out=None, show_progress=False)
            jax.block_until_ready(state.parameters)
            per_step.append((time.perf_counter() - start) / args.steps)
        blocks = ", ".join(f"{t * 1e3:.1f}" for t in per_step)
        print(
            f"{name:18s} warm-up (3 steps) {warmup:6.2f} s   per step [{blocks}] ms"
            f"   median {statistics.median(per_step) * 1e3:.1f} ms"
        )


if __name__ == "__main__":
    main()
