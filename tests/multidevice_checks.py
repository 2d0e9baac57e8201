"""Runs of the same problems on 1, 2 and 4 devices, printed as one JSON object.

Run by ``tests/test_parallel.py`` in a fresh interpreter with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the device count is fixed
when JAX starts). Each entry holds the values of one quantity on 1, 2 and 4 devices;
the test compares them.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from nqs import build, config, prepare, vstate
from nqs.drivers import loop, tdvp, vmc

ROOT = Path(__file__).resolve().parents[1]
DEVICES = (1, 2, 4)
#: A smaller system than the shipped dynamics examples (compiles faster).
TDVP_SIZE = ("lattice.extent=[8]", "driver.exact=false")
#: One-stage steps (the integrators are checked elsewhere; this checks the layout).
EULER = ('driver.integrator="euler"', "driver.dt=0.02")


def load(name: str, n_dev: int, *overrides: str):
    path = ROOT / "configs" / name
    return config.load(path, overrides=[f"parallel.devices={n_dev}", *overrides])


#: Estimates of a step compared across device counts (with the observables').
ESTIMATES = (
    "energy/error",
    "energy/variance",
    "energy/tau_corr",
    "energy/r_hat",
    "acceptance",
    "grad_norm",
)


def vmc_energies(name: str, n_steps: int, *overrides: str) -> dict[int, list[float]]:
    """Energies of ``n_steps`` VMC steps, then every other estimate of the last step
    (error, variance, tau, R-hat, acceptance, gradient norm, observables; NaN kept
    as a string) and the final parameters' norm."""
    out = {}
    for n_dev in DEVICES:
        cfg = load(name, n_dev, *overrides)
        problem = build.vmc_problem(cfg)
        state = vmc.init_state(problem, jax.random.key(cfg.seed))  # as nqs run
        values = []
        for _ in range(n_steps):
            state, info = vmc.vmc_step(problem, state)
            values.append(float(info["energy/mean"]))
        observed = [k for k in info if k.endswith("/mean") and k != "energy/mean"]
        for key in (*ESTIMATES, *sorted(observed)):
            values.append(float(np.real(info[key])))
        theta, _ = vstate.ravel(state.params)
        values.append(float(np.linalg.norm(np.asarray(theta))))
        out[n_dev] = values
    return out


def tdvp_energies(name: str, *overrides: str) -> dict[int, list[float]]:
    """Energies after two saved times of an evolution."""
    out = {}
    for n_dev in (1, 4):
        cfg = load(name, n_dev, *overrides)
        prep = prepare.prepare(cfg, config_path=ROOT / "configs" / name)
        state, values = prep.state, []
        for t in (0.02, 0.04):
            state, info = tdvp.advance(prep.problem, state, t, None)
            values.append(float(info["energy/mean"]))
        theta, _ = vstate.ravel(state.params)
        values.append(float(np.linalg.norm(np.asarray(theta))))
        out[n_dev] = values
    return out


def resumed(name: str, *overrides: str) -> dict[str, list[float]]:
    """10 steps on 4 devices, then resumed on 2 up to 20 (energies and log notes)."""
    from nqs import log as logmod

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        for n_dev, n_steps in ((4, 10), (2, 20)):
            prep = prepare.prepare(load(name, n_dev, *overrides))
            loop.run(
                prep.problem,
                prep.state,
                run_dir,
                n_steps,
                resume=n_dev == 2,
                checkpoint_every=10,
                exact_energy=-1.0,
            )
        data = logmod.read_log(run_dir / "log.h5")
        notes = logmod.read_attrs(run_dir / "log.h5").get("notes", "")
        return {"energies": data["history"]["energy/mean"].tolist(), "notes": notes}


def ground_state(run_dir: Path) -> str:
    """A short run of the quench's initial state (what ``initial_state`` loads)."""
    cfg = load("tfim_quench_ground.toml", 1, "driver.n_steps=5", *TDVP_SIZE)
    prepare.execute(prepare.prepare(cfg), run_dir)
    return f'driver.initial_state="{run_dir}"'


def main() -> None:
    assert jax.device_count() == 4, jax.devices()
    initial = ground_state(Path(tempfile.mkdtemp()) / "ground")
    heis = ("sampler.n_samples=256", "lattice.extent=[12]")
    results = {
        "tfim_20_steps": vmc_energies("tfim_chain.toml", 20),
        "heisenberg_gram_minsr": vmc_energies(
            "heisenberg_chain.toml", 3, *heis, 'preconditioner.solver="minsr"'
        ),
        "tdvp_real_time": tdvp_energies(
            "tfim_quench.toml", initial, "sampler.n_samples=256", *TDVP_SIZE, *EULER
        ),
        "tdvp_full_sum": tdvp_energies(
            "tfim_imaginary.toml", initial, *TDVP_SIZE, *EULER
        ),
        "resumed": resumed("tfim_chain.toml"),
    }
    for solver in ("dense", "minsr", "cg", "pinv"):
        results[f"complex_{solver}_chunked"] = vmc_energies(
            "heisenberg_chain_complex.toml",
            2,
            *heis,
            f'preconditioner.solver="{solver}"',
            "driver.chunk_size=32",
        )
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
