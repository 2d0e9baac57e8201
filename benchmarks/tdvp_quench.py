"""The quench benchmark of time-dependent VMC: accuracy against exact and speed.

TFIM chain L = 12: the ground state at h = 2 (``configs/tfim_quench_ground.toml``, RBM
alpha = 1 complex, run first if ``runs/tfim-h2`` is missing), quenched to h = 1 and
evolved to t = 1 (``configs/tfim_quench.toml``). For each variant it prints the largest
|<X>_tVMC(t) - <X>_exact(t)| over the saved times, the largest relative TDVP residual,
and the time per integrator step after compilation (median over chunks of 10 steps,
each chunk one compiled call ending in a measurement, blocked on its result).

    python benchmarks/tdvp_quench.py                       # the standard variants
    python benchmarks/tdvp_quench.py --set preconditioner.diag_shift=1e-3 ...

The exact curve is the evolution of the loaded initial state's full vector by
``nqs.exact`` (expm_multiply), so it measures the error of the evolution alone, not of
the ground-state search.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import jax
import numpy as np

from nqs import build_dynamics, prepare
from nqs.config import load
from nqs.drivers import tdvp

ROOT = Path(__file__).resolve().parent.parent
GROUND = ROOT / "configs" / "tfim_quench_ground.toml"
QUENCH = ROOT / "configs" / "tfim_quench.toml"

VARIANTS = {
    "monte-carlo rk4": [],
    "full-sum rk4": ['sampler={kind = "full_sum"}'],
    "full-sum rk45": [
        'sampler={kind = "full_sum"}',
        'driver.integrator="rk45"',
        "driver.rtol=1e-6",
        "driver.atol=1e-8",
    ],
}


def ensure_ground(run_dir: Path) -> None:
    if (run_dir / "final_state.npz").is_file():
        return
    subprocess.run(
        ["nqs", "run", str(GROUND), "-o", str(run_dir), "-q"],
        check=True,
    )


def measure(overrides: list[str], initial: Path) -> dict:
    over = [f'driver.initial_state="{initial}"', "driver.save_every_t=0.1", *overrides]
    cfg = load(QUENCH, overrides=over)
    prep = prepare.prepare(cfg)
    grid = build_dynamics.save_grid(cfg)
    ex = build_dynamics.exact_dynamics(cfg, prep.objects, prep.state.params, grid)
    state, rows, times = prep.state, [], []
    for t in grid:
        tic = time.perf_counter()
        state, info = tdvp.advance(prep.problem, state, float(t))
        jax.block_until_ready(state.params)
        times.append(time.perf_counter() - tic)
        rows.append(jax.device_get(info))
    mx = np.array([np.real(r["magnetization_x/mean"]) for r in rows])
    steps = np.diff([int(r["n_steps"]) for r in rows])
    per_step = np.array(times[2:]) / np.maximum(steps[1:], 1)  # after compilation
    return {
        "max_error": float(np.max(np.abs(mx - ex["magnetization_x"]))),
        "max_residual": float(np.nanmax([r["residual"] for r in rows[1:]])),
        "n_steps": int(rows[-1]["n_steps"]),
        "time_per_step": float(np.median(per_step)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--initial", type=Path, default=ROOT / "runs" / "tfim-h2")
    parser.add_argument("--only", action="append", default=None)
    args = parser.parse_args()
    ensure_ground(args.initial)
    for name, over in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        res = measure([*over, *args.overrides], args.initial)
        print(
            f"{name:<18} max|<X> - exact| {res['max_error']:.2e}  max residual "
            f"{res['max_residual']:.2e}  {res['n_steps']:4d} steps  "
            f"{res['time_per_step'] * 1e3:7.1f} ms/step",
            flush=True,
        )


if __name__ == "__main__":
    main()
