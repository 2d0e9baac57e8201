"""Samples per second of MetropolisSampler: RBM (alpha = 1), local rule, spin-1/2.

Usage: ``python benchmarks/sampler.py [--n-sites 20 100] [--repeats 5]
[--configs configs/tfim_chain.toml ...]``.

Times one ``sample`` call (n_discard_per_chain = 16 sweeps plus 1024 / n_chains sweeps
that are recorded) after compilation, with ``block_until_ready``; reports the median of
the repeats. Samples/s counts the recorded samples only; proposals/s counts every
Metropolis proposal (discarded sweeps included) of all chains. With ``--configs``, also
times ``nqs.sampler.sample`` for the sampler, model and initial state that
``nqs.prepare.prepare`` makes from each TOML file (one VMC step's sampling), and reports
the time per sequential Metropolis move. Set ``OPENBLAS_NUM_THREADS=1`` for figures
comparable with a VMC run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import nqs.config  # noqa: E402
import nqs.prepare  # noqa: E402
import nqs.sampler  # noqa: E402
from nqs.hilbert import Spin  # noqa: E402
from nqs.models import RBM  # noqa: E402
from nqs.rules import LocalRule  # noqa: E402
from nqs.sampler import MetropolisSampler  # noqa: E402


def bench(n_sites: int, n_chains: int, n_samples: int, repeats: int) -> dict:
    hilbert = Spin(n_sites)
    sampler = MetropolisSampler(
        hilbert, LocalRule(hilbert), n_chains=n_chains, n_samples=n_samples
    )
    model = RBM(alpha=1, kernel_scale=0.1)
    params = model.init(jax.random.key(0), hilbert.random_states(jax.random.key(1), 1))
    state = sampler.init(model, params, jax.random.key(2))
    start = time.perf_counter()
    samples, state = sampler.sample(model, params, state)
    jax.block_until_ready(samples)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        samples, state = sampler.sample(model, params, state)
        jax.block_until_ready((samples, state))
        times.append(time.perf_counter() - start)
    t = statistics.median(times)
    n_recorded = samples.shape[0] * samples.shape[1]
    sweeps = sampler.n_discard_per_chain + sampler.n_samples_per_chain
    n_proposals = n_chains * sweeps * sampler.n_sweep
    return {
        "n_sites": n_sites,
        "first_call_s": compile_s,
        "time_s": t,
        "samples_per_s": n_recorded / t,
        "proposals_per_s": n_proposals / t,
    }


def bench_config(path: str, repeats: int) -> dict:
    prep = nqs.prepare.prepare(nqs.config.load(path))
    sampler, model = prep.problem.sampler, prep.problem.model
    params, state = prep.state.params, prep.state.sampler_state
    jax.block_until_ready(nqs.sampler.sample(sampler, model, params, state))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _, state = nqs.sampler.sample(sampler, model, params, state)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    t = statistics.median(times)
    sweeps = sampler.n_discard_per_chain + sampler.n_samples_per_chain
    n_moves = sweeps * sampler.n_sweep
    return {"config": path, "time_s": t, "us_per_move": 1e6 * t / n_moves}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sites", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--n-chains", type=int, default=16)
    parser.add_argument("--n-samples", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configs", nargs="*", default=[])
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; RBM alpha=1, local")
    print(f"rule, {args.n_chains} chains, {args.n_samples} samples per call")
    header = f"{'n_sites':>8} {'1st call s':>11} {'median s':>9} {'samples/s':>11}"
    print(header + f" {'proposals/s':>12}")
    for n in args.n_sites:
        r = bench(n, args.n_chains, args.n_samples, args.repeats)
        print(
            f"{r['n_sites']:>8} {r['first_call_s']:>11.2f} {r['time_s']:>9.4f} "
            f"{r['samples_per_s']:>11.0f} {r['proposals_per_s']:>12.3g}"
        )

    if args.configs:
        print(f"\n{'config':>32} {'median ms':>10} {'us/move':>8}")
    for path in args.configs:
        r = bench_config(path, args.repeats)
        print(f"{r['config']:>32} {1e3 * r['time_s']:>10.2f} {r['us_per_move']:>8.2f}")
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
