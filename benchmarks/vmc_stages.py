"""Time the stages of one compiled VMC step separately, real against complex RBM.

Usage: ``python benchmarks/vmc_stages.py [--workloads heisenberg_chain
heisenberg_chain_complex16] [--repeats 15] [--steps 3]``.

Each workload is an ``nqs bench`` workload (a name ``nqs.bench.resolve`` knows, or a
TOML path). After ``--steps`` VMC steps (so that parameters and chains are no longer
those of the uniform start), every stage is compiled as its own jitted function of the
same inputs the step gives it, and timed with ``block_until_ready`` (median of
``--repeats`` calls after one compiling call):

* ``sample``: ``sampler.sample`` (thermalisation and recorded sweeps);
* ``e_loc``: ``vstate.local_estimates`` on all samples (the needed ones of the
  n_samples x n_conn connected rows), in the step's chunks;
* ``gram``: the model's ``log_derivative_gram`` (if it has one);
* ``sr``: ``sr.sr_direction`` (Gram/Jacobian, kernel, Cholesky, back-projection);
* ``step``: the whole ``vmc_step``.

The stages are timed in an interleaved order (one call of each, repeated), so slow
periods of a shared machine spread over all of them. BLAS threads are set to one as
the CLI does. ``--cpu-time`` runs XLA on one thread and reports the minimum process
CPU time instead of the median wall time: a measure of the work, much less sensitive
to other jobs on a shared machine, for comparing two versions of the code.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
CPU_TIME = "--cpu-time" in sys.argv[1:]
if CPU_TIME:  # before jax is imported
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    )

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import nqs.bench  # noqa: E402
import nqs.config  # noqa: E402
import nqs.prepare  # noqa: E402
from nqs import sr as sr_mod  # noqa: E402
from nqs import vstate  # noqa: E402
from nqs.drivers import vmc  # noqa: E402


def stages(name: str, n_steps: int):
    """Jitted stage functions and their arguments for one workload."""
    prep = nqs.prepare.prepare(nqs.config.load(nqs.bench.resolve(name)))
    problem, state = prep.problem, prep.state
    for _ in range(n_steps):
        state, _ = vmc.vmc_step(problem, state)
    model, sampler, ham = problem.model, problem.sampler, problem.hamiltonian
    params, chain = state.params, state.sampler_state
    samples, _ = sampler.sample(model, params, chain)
    flat = samples.reshape(-1, samples.shape[-1])
    chunk = problem.chunk_size
    e_loc = vstate.local_estimates(model, params, flat, ham, chunk)

    @jax.jit
    def sample(p, c):
        return sampler.sample(model, p, c)

    @jax.jit
    def local(p, s):
        return vstate.local_estimates(model, p, s, ham, chunk)

    @jax.jit
    def direction(p, s, e):
        return sr_mod.sr_direction(model, p, s, e, problem.sr, 0, chunk)

    out = {
        "sample": (sample, (params, chain)),
        "e_loc": (local, (params, flat)),
        "sr": (direction, (params, flat, e_loc)),
        "step": (lambda st: vmc.vmc_step(problem, st), (state,)),
    }
    if callable(getattr(model, "log_derivative_gram", None)):
        gram = jax.jit(lambda p, s: model.log_derivative_gram(p, s))
        out["gram"] = (gram, (params, flat))
    return out


def time_stages(funcs: dict, repeats: int) -> dict[str, float]:
    """Seconds per call of each stage, calls interleaved across stages: median wall
    time, or with ``--cpu-time`` minimum process CPU time."""
    clock = time.process_time if CPU_TIME else time.perf_counter
    reduce = min if CPU_TIME else statistics.median
    for fn, args in funcs.values():
        jax.block_until_ready(fn(*args))  # compile
    times: dict[str, list[float]] = {k: [] for k in funcs}
    for _ in range(repeats):
        for key, (fn, args) in funcs.items():
            start = clock()
            jax.block_until_ready(fn(*args))
            times[key].append(clock() - start)
    return {k: reduce(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workloads",
        nargs="+",
        default=["heisenberg_chain", "heisenberg_chain_complex16"],
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument(
        "--cpu-time", action="store_true", help="one XLA thread, min CPU time"
    )
    args = parser.parse_args()
    order = ("sample", "e_loc", "gram", "sr", "step")
    unit = "ms, min CPU time, 1 thread" if CPU_TIME else "ms, median wall time"
    print(f"{'workload':<26}" + "".join(f"{k:>10}" for k in order) + f"   ({unit})")
    for name in args.workloads:
        med = time_stages(stages(name, args.steps), args.repeats)
        cells = "".join(
            f"{med[k] * 1e3:10.2f}" if k in med else f"{'-':>10}" for k in order
        )
        print(f"{name:<26}{cells}")


if __name__ == "__main__":
    main()
