"""Config → objects: lattice, Hilbert space, Hamiltonian, model, sampler, SR, problem.

Each builder takes a validated :class:`nqs.config.Config` and calls one library
constructor; a ``ValueError`` (or ``TypeError`` from bad keyword arguments) raised there
is re-raised as ``InputError`` naming the config key it came from.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nqs.config import Config
from nqs.errors import InputError

#: Largest Hilbert-space dimension ``exact_result`` diagonalises by default.
MAX_EXACT_DIMENSION = 40_000_000


@contextlib.contextmanager
def as_input_error(key: str) -> Iterator[None]:
    """Re-raise ``ValueError``/``TypeError`` inside the block as ``InputError(key)``."""
    try:
        yield
    except InputError:
        raise
    except (ValueError, TypeError) as err:
        raise InputError(key, str(err)) from err


def lattice(cfg: Config):
    """The ``nqs.lattice.Lattice`` of ``[lattice]``."""
    from nqs import lattice as lat_mod

    lat = cfg.lattice
    with as_input_error("lattice"):
        if lat.kind == "custom":
            return lat_mod.custom(lat.n_sites, lat.edges)
        if lat.kind == "chain":
            pbc = lat.pbc[0] if isinstance(lat.pbc, tuple) else lat.pbc
            return lat_mod.chain(lat.extent[0], pbc=pbc, max_order=lat.max_order)
        make = getattr(lat_mod, lat.kind)
        return make(lat.extent, pbc=lat.pbc, max_order=lat.max_order)


def hilbert(cfg: Config, lat=None):
    """The ``nqs.hilbert`` space of ``[hilbert]`` on the sites of ``lat``."""
    from nqs import hilbert as hil_mod

    hil = cfg.hilbert
    n_sites = cfg.n_sites if lat is None else lat.n_sites
    if hil.kind == "spin":
        key = "hilbert.total_sz" if hil.total_sz is not None else "hilbert.s"
        with as_input_error(key):
            return hil_mod.Spin(n_sites, s=hil.s, total_sz=hil.total_sz)
    key = "hilbert.n_particles" if hil.n_particles is not None else "hilbert.n_max"
    with as_input_error(key):
        return hil_mod.Fock(n_sites, n_max=hil.n_max, n_particles=hil.n_particles)


def hamiltonian(cfg: Config, hil, lat):
    """The Hamiltonian operator of ``[hamiltonian]`` (``nqs.hamiltonian.<kind>``)."""
    from nqs import hamiltonian as ham_mod

    ham = cfg.hamiltonian
    if ham.sign_rule == "marshall" and lat.bipartition is None:
        raise InputError(
            "hamiltonian.sign_rule",
            "the Marshall sign rule needs a bipartite nearest-neighbour graph; this "
            f"{cfg.lattice.kind} lattice is not (odd periodic extent or frustrated)",
        )
    with as_input_error("hamiltonian"):
        return getattr(ham_mod, ham.kind)(hil, lat, **ham.kwargs())


def model(cfg: Config, hil):
    """The Flax module of ``[model]`` via ``nqs.models.build``."""
    from nqs import models

    m = cfg.model
    with as_input_error("model"):
        try:
            return models.build(m.kind, hil, param_dtype=m.param_dtype, **m.kwargs)
        except (ImportError, AttributeError, OSError) as err:
            raise InputError("model.kind", f"cannot load {m.kind!r}: {err}") from err


def rule(cfg: Config, hil, lat, ham):
    """The Metropolis transition rule of ``sampler.rule``."""
    from nqs import rules

    name = cfg.sampler.rule
    with as_input_error("sampler.rule"):
        if name == "local":
            return rules.LocalRule(hil)
        if name == "exchange":
            return rules.ExchangeRule(lat.edges_of_order(1))
        if name == "hop":
            return rules.HopRule(hil, lat.edges_of_order(1))
        return rules.HamiltonianRule(ham)


def sampler(cfg: Config, hil, lat, ham):
    """The sampler of ``[sampler]`` (Metropolis or exact enumeration)."""
    from nqs import sampler as smp_mod

    s = cfg.sampler
    with as_input_error("sampler"):
        if s.kind == "exact":
            return smp_mod.ExactSampler(
                hil, n_samples=s.n_samples, power=s.power, n_chains=s.n_chains
            )
        return smp_mod.MetropolisSampler(
            hil,
            rule(cfg, hil, lat, ham),
            n_chains=s.n_chains,
            n_samples=s.n_samples,
            n_discard_per_chain=s.n_discard_per_chain,
            sweep_size=s.sweep_size,
            power=s.power,
        )


def sr(cfg: Config):
    """``nqs.sr.SR`` settings of ``[preconditioner]``, or None for ``kind = "none"``."""
    from nqs import sr as sr_mod

    p = cfg.preconditioner
    if p.kind == "none":
        return None
    shift, schedule = p.diag_shift, None
    if isinstance(shift, dict):
        from nqs import optimizer as opt_mod

        with as_input_error("preconditioner.diag_shift"):
            schedule = opt_mod.build_schedule(shift)
        shift = float(schedule(0))
    with as_input_error("preconditioner"):
        return sr_mod.SR(
            diag_shift=shift,
            diag_scale=p.diag_scale,
            solver=p.solver,
            cg_tol=p.cg_tol,
            cg_maxiter=p.cg_maxiter,
            shift_schedule=schedule,
        )


def optimizer(cfg: Config):
    """The optax transformation of ``[optimizer]`` (``nqs.optimizer``)."""
    from nqs import optimizer as opt_mod

    o = cfg.optimizer
    table = {"kind": o.kind, "learning_rate": o.learning_rate, **o.kwargs}
    with as_input_error("optimizer"):
        return opt_mod.build_optimizer(table)


def observables(cfg: Config, hil, lat) -> dict[str, Any]:
    """``{name: operator}`` of ``[observables]`` (``nqs.observables``)."""
    if not cfg.observables:
        return {}
    from nqs import observables as obs_mod

    out = {}
    for name, table in cfg.observables.items():
        with as_input_error(f"observables.{name}"):
            out[name] = obs_mod.build_observable(table, hil, lat)
    return out


def n_parameters(module, hil) -> int:
    """Number of real parameters of ``module`` (a complex entry counts twice)."""
    sigma = jnp.zeros((1, hil.n_sites), jnp.int8)
    with as_input_error("model"):
        shapes = jax.eval_shape(module.init, jax.random.key(0), sigma)
    leaves = jax.tree_util.tree_leaves(shapes.get("params", shapes))
    return sum(
        math.prod(x.shape) * (2 if jnp.issubdtype(x.dtype, jnp.complexfloating) else 1)
        for x in leaves
    )


def memory_per_step(cfg: Config, objs: Objects) -> int | None:
    """Estimated peak bytes of one driver step (None if the driver is not available)."""
    if cfg.driver.kind != "vmc":
        return None
    from nqs.drivers import vmc

    return vmc.estimate_memory(vmc_problem(cfg, objs))


def exact_result(cfg: Config, max_dimension: int = MAX_EXACT_DIMENSION) -> dict:
    """Lowest eigenvalues of the config's Hamiltonian by sparse diagonalisation.

    Returns:
        {"energy", "energy_per_site", "dimension", "n_sites", "wall_time",
        "first_excited_energy", "gap"}: the last two (when the space has two states)
        are the second-lowest eigenvalue of the space, so a degenerate ground state
        gives gap 0; the space is the config's (sector of ``total_sz`` /
        ``n_particles`` when fixed).
    Raises:
        InputError: the space is larger than ``max_dimension`` (message gives the
            memory estimate).
    """
    from nqs import exact

    start = time.perf_counter()
    lat = lattice(cfg)
    hil = hilbert(cfg, lat)
    ham = hamiltonian(cfg, hil, lat)
    dim = int(hil.n_states)
    if dim > max_dimension:
        gib = exact.estimate_memory(hil, ham) / 1024**3
        raise InputError(
            "hilbert",
            f"dimension {dim:.4g} is too large for exact diagonalisation (limit "
            f"{max_dimension:.4g}; about {gib:.3g} GiB needed)",
        )
    k = 2 if dim > 1 else 1
    with as_input_error("hamiltonian"):
        energies, _ = exact.ground_state(ham, k=k, max_states=None)
    energies = np.sort(np.real(np.asarray(energies)))
    out = {
        "energy": float(energies[0]),
        "energy_per_site": float(energies[0]) / hil.n_sites,
        "dimension": dim,
        "n_sites": hil.n_sites,
    }
    if k == 2:
        out["first_excited_energy"] = float(energies[1])
        out["gap"] = float(energies[1] - energies[0])
    out["wall_time"] = time.perf_counter() - start
    return out


class Objects(NamedTuple):
    """Everything a config describes, built (see :func:`objects`)."""

    lattice: Any
    hilbert: Any
    hamiltonian: Any
    model: Any
    sampler: Any
    optimizer: Any
    sr: Any
    observables: dict[str, Any]


def objects(cfg: Config) -> Objects:
    """Build every object of ``cfg`` (raises ``InputError`` naming the key)."""
    lat = lattice(cfg)
    hil = hilbert(cfg, lat)
    ham = hamiltonian(cfg, hil, lat)
    return Objects(
        lattice=lat,
        hilbert=hil,
        hamiltonian=ham,
        model=model(cfg, hil),
        sampler=sampler(cfg, hil, lat, ham),
        optimizer=optimizer(cfg),
        sr=sr(cfg),
        observables=observables(cfg, hil, lat),
    )


def vmc_problem(cfg: Config, objs: Objects | None = None):
    """The ``nqs.drivers.vmc.VMCProblem`` of a ``driver.kind = "vmc"`` config."""
    from nqs.drivers import vmc

    objs = objects(cfg) if objs is None else objs
    d = cfg.driver
    with as_input_error("driver"):
        return vmc.VMCProblem(
            model=objs.model,
            sampler=objs.sampler,
            hamiltonian=objs.hamiltonian,
            optimizer=objs.optimizer,
            sr=objs.sr,
            observables=tuple(objs.observables.items()),
            chunk_size=d.chunk_size,
            observe_every=d.observables_every,
            safety=vmc.Safety(**d.safety()),
        )


class Prepared(NamedTuple):
    """A built VMC run, ready to start (see :func:`prepare` and :func:`execute`)."""

    cfg: Config
    objects: Objects
    problem: Any
    state: Any
    n_parameters: int


def prepare(cfg: Config) -> Prepared:
    """Build the problem and its initial state (PRNG key from ``cfg.seed``); nothing is
    written. Raises ``InputError`` for bad input, and for a driver not available."""
    if cfg.driver.kind != "vmc":
        raise InputError(
            "driver.kind",
            f"the {cfg.driver.kind} driver is not available yet in nqs "
            f'{_version()}; use kind = "vmc"',
        )
    from nqs.drivers import vmc

    objs = objects(cfg)
    problem = vmc_problem(cfg, objs)
    with as_input_error("model"):
        state = vmc.init_state(problem, jax.random.key(cfg.seed))
    return Prepared(cfg, objs, problem, state, vmc.n_parameters(state.params))


def _version() -> str:
    import nqs

    return nqs.__version__


def exact_limit(cfg: Config) -> int:
    """Largest dimension for which the run computes the exact energy at start."""
    from nqs.drivers import loop

    mode = cfg.driver.exact
    if mode == "auto":
        return loop.MAX_EXACT_DIMENSION
    return MAX_EXACT_DIMENSION if mode else 0


def execute(
    prep: Prepared,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: Callable[[dict], None] | None = None,
):
    """Run the prepared VMC problem into ``run_dir`` (``nqs.drivers.loop.run``).

    Returns:
        ``nqs.drivers.loop.RunResult``.
    """
    from nqs import config as config_mod
    from nqs.drivers import loop

    d = prep.cfg.driver
    early = None
    if d.early_stop:
        early = loop.EarlyStop(patience=d.patience, rel_tol=d.rel_tol)
    return loop.run(
        prep.problem,
        prep.state,
        run_dir,
        d.n_steps,
        config_text=config_mod.resolved_toml(prep.cfg),
        resume=resume,
        checkpoint_every=d.checkpoint_every,
        flush_every=d.flush_every,
        progress=progress,
        max_exact_dimension=exact_limit(prep.cfg),
        early_stop=early,
        log_attrs={"seed": prep.cfg.seed, "name": prep.cfg.name},
    )
