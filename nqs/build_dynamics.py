"""Config → a TDVP evolution: its problem, its initial state, its exact reference.

``[driver] kind = "tdvp"`` evolves the final state of an earlier run (``initial_state``,
a run directory) under the config's ``[hamiltonian]``. That run's lattice, Hilbert
space and model must be the config's (checked from the resolved config stored in its
log, then by loading its ``final_state.npz`` into the model's parameters).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nqs.build import Objects, as_input_error, chunk_size, objects
from nqs.config import Config
from nqs.errors import InputError

#: Largest basis for which a run stores the exact evolution of its observables.
MAX_EXACT_DYNAMICS = 2**16
#: Largest basis ``nqs exact`` evolves on a tdvp config.
MAX_EXACT_DYNAMICS_CLI = 2**22
#: Sections of the initial run that must equal the evolution's.
MATCHING_SECTIONS = ("lattice", "hilbert", "model")

KEY = "driver.initial_state"


def initial_run_dir(cfg: Config, config_path: str | Path | None = None) -> Path:
    """The directory ``driver.initial_state`` names (relative to the working
    directory, else to the config file's directory).

    Raises:
        InputError: key ``driver.initial_state``, no such run or no final state.
    """
    from nqs.drivers import loop

    given = Path(cfg.driver.initial_state).expanduser()
    candidates = [given]
    if config_path is not None and not given.is_absolute():
        candidates.append(Path(config_path).resolve().parent / given)
    for path in candidates:
        if path.is_dir():
            if not (path / loop.FINAL_STATE_FILE).is_file():
                raise InputError(
                    KEY,
                    f"{path} holds no final state ({loop.FINAL_STATE_FILE}); the run "
                    "did not finish (complete it with `nqs run --resume`)",
                )
            return path
    raise InputError(KEY, f"no run directory {str(given)!r}")


def check_initial_config(cfg: Config, run_dir: Path) -> None:
    """The initial run's lattice, Hilbert space and model must be this config's.

    Raises:
        InputError: key ``driver.initial_state``, naming the first section that
            differs.
    """
    from nqs import analysis
    from nqs import config as config_mod

    log = run_dir / "log.h5"
    if not log.is_file():
        return  # only the final state: its shapes are checked when it is loaded
    stored = analysis.load_run(log).attrs.get("config", "")
    try:
        old = config_mod.to_dict(config_mod.loads(stored))
    except InputError as err:
        raise InputError(KEY, f"the config stored in {log} is unreadable") from err
    new = config_mod.to_dict(cfg)
    for section in MATCHING_SECTIONS:
        a, b = old.get(section), new.get(section)
        if a != b:
            keys = sorted(set(a or {}) | set(b or {}))
            diff = [k for k in keys if (a or {}).get(k) != (b or {}).get(k)]
            detail = ", ".join(
                f"{section}.{k} = {(a or {}).get(k)!r} there, {(b or {}).get(k)!r} here"
                for k in diff[:2]
            )
            raise InputError(
                KEY,
                f"the initial run {run_dir} has a different [{section}] ({detail}); "
                "the evolution needs the same lattice, Hilbert space and model",
            )


def load_initial_params(
    cfg: Config, objs: Objects, config_path: str | Path | None = None
) -> Any:
    """The initial run's final parameters, checked against this config's model."""
    from nqs.drivers import loop

    run_dir = initial_run_dir(cfg, config_path)
    check_initial_config(cfg, run_dir)
    sigma = jnp.zeros((1, objs.hilbert.n_sites), jnp.int8)
    with as_input_error("model"):
        like = objs.model.init(jax.random.key(0), sigma)
    try:
        return loop.load_final_params(run_dir, like)
    except InputError as err:
        raise InputError(
            KEY,
            f"the final state of {run_dir} does not fit this model ({err.message})",
        ) from err


def _is_complex_output(model, params, n_sites: int) -> bool:
    out = jax.eval_shape(model.apply, params, jnp.zeros((1, n_sites), jnp.int8))
    return bool(jnp.issubdtype(out.dtype, jnp.complexfloating))


def tdvp_problem(cfg: Config, objs: Objects, params: Any = None):
    """The ``nqs.drivers.tdvp.TDVPProblem`` of a ``driver.kind = "tdvp"`` config."""
    from nqs import integrate
    from nqs.drivers import tdvp

    d = cfg.driver
    if objs.sr is None:
        raise InputError(
            "preconditioner.kind",
            'the tdvp driver solves S dtheta/dt = F: use kind = "sr" (its solver and '
            "diag_shift regularise S)",
        )
    n_sites = objs.hilbert.n_sites
    if (
        params is not None
        and d.time == "real"
        and not _is_complex_output(objs.model, params, n_sites)
    ):
        raise InputError(
            "model.param_dtype",
            "real-time evolution needs a complex wave function (a real log psi "
            'cannot acquire a phase): use param_dtype = "complex128"',
        )
    controller = None
    if d.adaptive:
        dt_max = d.dt_max or d.save_every_t or d.t_end
        with as_input_error("driver"):
            controller = integrate.Controller(
                rtol=d.rtol,
                atol=d.atol,
                dt_min=d.dt_min or d.dt * 1e-4,
                dt_max=max(dt_max, d.dt),
            )
    with as_input_error("driver"):
        return tdvp.TDVPProblem(
            model=objs.model,
            sampler=objs.sampler,
            hamiltonian=objs.hamiltonian,
            sr=objs.sr,
            integrator=d.integrator,
            dt=d.dt,
            controller=controller,
            error_norm=d.error_norm,
            time=d.time,
            observables=tuple(objs.observables.items()),
            chunk_size=chunk_size(cfg, objs),
            sharding=objs.sharding,
        )


def save_grid(cfg: Config) -> np.ndarray:
    """The saved times of a tdvp config (``nqs.drivers.tdvp_loop.save_times``)."""
    from nqs.drivers import tdvp_loop

    d = cfg.driver
    return tdvp_loop.save_times(d.t_end, d.save_every_t, d.dt)


def state_vector(model, params, hilbert) -> np.ndarray:
    """The normalised state ψ(σ) over ``hilbert.all_states()``, (n_states,) complex."""
    states = jnp.asarray(np.asarray(hilbert.all_states(), dtype=np.int8))
    log_psi = np.asarray(jax.jit(model.apply)(params, states)).astype(np.complex128)
    finite = np.isfinite(log_psi.real)
    top = np.max(log_psi.real[finite]) if finite.any() else 0.0
    psi = np.where(finite, np.exp(log_psi - top), 0.0)
    return psi / np.linalg.norm(psi)


def exact_dynamics(
    cfg: Config, objs: Objects, params: Any, grid: np.ndarray
) -> dict[str, Any]:
    """Exact ⟨H⟩(t), ⟨O⟩(t) of the initial state on the save grid, and E_0 of H.

    Returns:
        {"t", "energy_t", <observable>...: (n_t,) arrays, "ground_energy": float}.
    """
    from nqs import exact

    psi0 = state_vector(objs.model, params, objs.hilbert)
    traces = exact.observable_traces(
        objs.hamiltonian,
        psi0,
        grid,
        tuple(objs.observables.items()),
        imaginary=cfg.driver.time == "imaginary",
    )
    out: dict[str, Any] = {"t": traces.pop("t"), "energy_t": traces.pop("energy")}
    out.update(traces)
    energies, _ = exact.ground_state(objs.hamiltonian, k=1)
    out["ground_energy"] = float(np.real(energies[0]))
    return out


def exact_limit(cfg: Config) -> int:
    """Largest basis for which a tdvp run stores its exact evolution."""
    mode = cfg.driver.exact
    if mode == "auto":
        return MAX_EXACT_DYNAMICS
    return MAX_EXACT_DYNAMICS_CLI if mode else 0


def exact_dynamics_result(
    cfg: Config, config_path: str | Path | None = None
) -> dict[str, Any]:
    """What ``nqs exact`` prints for a tdvp config: the exact curves on the grid.

    Raises:
        InputError: the basis is larger than ``MAX_EXACT_DYNAMICS_CLI`` (key
            ``hilbert``), or the initial state cannot be loaded.
    """
    start = time.perf_counter()
    objs = objects(cfg)
    dim = int(objs.hilbert.n_states)
    if dim > MAX_EXACT_DYNAMICS_CLI:
        raise InputError(
            "hilbert",
            f"dimension {dim:.4g} is too large for the exact evolution (limit "
            f"{MAX_EXACT_DYNAMICS_CLI:,})",
        )
    params = load_initial_params(cfg, objs, config_path)
    out = exact_dynamics(cfg, objs, params, save_grid(cfg))
    ground = out.pop("ground_energy")
    return {
        "energy": ground,
        "energy_per_site": ground / objs.hilbert.n_sites,
        "dimension": dim,
        "n_sites": int(objs.hilbert.n_sites),
        "time": cfg.driver.time,
        "series": {k: _jsonable(v) for k, v in out.items()},
        "wall_time": time.perf_counter() - start,
    }


def _jsonable(values: np.ndarray) -> list:
    values = np.asarray(values)
    if np.iscomplexobj(values):
        return [[float(v.real), float(v.imag)] for v in values]
    return [float(v) for v in values]
