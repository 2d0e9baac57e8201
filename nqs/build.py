"""Config → objects: lattice, Hilbert space, Hamiltonian, model, sampler, SR, problem.

What is checked before a run writes anything, and the run itself, are in
``nqs.prepare``.

Each builder takes a validated :class:`nqs.config.Config` and calls one library
constructor; a ``ValueError`` (or ``TypeError`` from bad keyword arguments) raised there
is re-raised as ``InputError`` naming the config key it came from.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nqs.config import Config
from nqs.errors import InputError

#: Largest Hilbert-space dimension ``exact_result`` diagonalises by default.
MAX_EXACT_DIMENSION = 40_000_000


#: Largest Hilbert space the exact and full-sum samplers enumerate (they evaluate the
#: model on every state at every step): 2^20 states, a 20-site spin-1/2 chain.
MAX_ENUMERATION = 2**20

#: Most Metropolis proposals one step may make,
#: n_chains * (n_samples / n_chains + n_discard_per_chain) * sweep_size (~minutes).
MAX_PROPOSALS_PER_STEP = 10**10


@contextlib.contextmanager
def keyed(prefix: str) -> Iterator[None]:
    """Errors of a builder given a free table, named by their config key.

    An ``InputError`` whose key is relative to the table becomes ``prefix.key``; any
    other ``ValueError``/``TypeError`` becomes ``InputError(prefix)``.
    """
    try:
        yield
    except InputError as err:
        key = ".".join(k for k in (prefix, err.key) if k)
        raise InputError(key, err.message) from err
    except (ValueError, TypeError) as err:
        raise InputError(prefix, str(err)) from err


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
    if getattr(ham, "sign_rule", None) == "marshall" and lat.bipartition is None:
        raise InputError(
            "hamiltonian.sign_rule",
            "the Marshall sign rule needs a bipartite nearest-neighbour graph; this "
            f"{cfg.lattice.kind} lattice is not (odd periodic extent or frustrated)",
        )
    with as_input_error("hamiltonian"):
        return getattr(ham_mod, ham.kind)(hil, lat, **ham.kwargs())


def model(cfg: Config, hil, lat=None, sector=None):
    """The Flax module of ``[model]`` via ``nqs.models.build``.

    ``lat`` and ``sector`` (the ``[symmetry]`` sector) go to models that take them;
    with a ``[symmetry]`` section the model must stay in the sector (a symmetric
    ansatz or ``symmetrize = true``), else ``InputError`` naming
    ``model.symmetrize``.
    """
    from nqs import models

    m = cfg.model
    with keyed("model"):
        try:
            module = models.build(
                m.kind,
                hil,
                lattice=lat,
                sector=sector,
                symmetrize=m.symmetrize,
                param_dtype=m.param_dtype,
                **m.kwargs,
            )
        except (ImportError, AttributeError, OSError) as err:
            raise InputError("model.kind", f"cannot load {m.kind!r}: {err}") from err
    if sector is not None and not models.honours_sector(module):
        raise InputError(
            "model.symmetrize",
            f"{m.kind} does not stay in the [symmetry] sector on its own: set "
            "symmetrize = true to project it, use a symmetric kind (rbm_symm, gcnn), "
            "or remove [symmetry]",
        )
    if m.dtype != "float64":
        from nqs.models.precision import ComputeDtype

        module = ComputeDtype(module, m.dtype)
    return module


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
    """The sampler of ``[sampler]`` (Metropolis, exact draws or the full sum)."""
    from nqs import sampler as smp_mod

    s = cfg.sampler
    with as_input_error("sampler"):
        if s.kind == "full_sum":
            return smp_mod.FullSumSampler(hil)
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

        with keyed("preconditioner.diag_shift"):
            schedule = opt_mod.build_schedule(shift)
            opt_mod.check_schedule(schedule, _n_steps(cfg))
        shift = float(schedule(0))
    with as_input_error("preconditioner"):
        return sr_mod.SR(
            diag_shift=shift,
            diag_scale=p.diag_scale,
            solver=p.solver,
            cg_tol=p.cg_tol,
            cg_maxiter=p.cg_maxiter,
            shift_schedule=schedule,
            rcond=p.rcond,
            smooth_cutoff=p.smooth_cutoff,
            snr_cutoff=p.snr_cutoff,
        )


def optimizer(cfg: Config):
    """The optax transformation of ``[optimizer]`` (``nqs.optimizer``)."""
    from nqs import optimizer as opt_mod

    with keyed("optimizer"):
        return opt_mod.build_optimizer(_optimizer_table(cfg))


def _optimizer_table(cfg: Config) -> dict[str, Any]:
    o = cfg.optimizer
    return {"kind": o.kind, "learning_rate": o.learning_rate, **o.kwargs}


def observables(cfg: Config, hil, lat) -> dict[str, Any]:
    """``{name: operator}`` of ``[observables]`` (``nqs.observables``)."""
    if not cfg.observables:
        return {}
    from nqs import observables as obs_mod

    out = {}
    for name, table in cfg.observables.items():
        with keyed(f"observables.{name}"):
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
    """Estimated peak bytes of one driver step (None if the driver is not available).

    The exact and full-sum samplers add their enumeration: every state (int8) and its
    log-amplitude, probabilities and draw or weight (complex128, float64 x 2).
    """
    from nqs.drivers import vmc

    if cfg.driver.kind == "tdvp":  # the same pieces, once per Runge-Kutta stage
        from nqs.build_dynamics import tdvp_problem

        memory = vmc.estimate_memory(tdvp_problem(cfg, objs))
    else:
        memory = vmc.estimate_memory(vmc_problem(cfg, objs))
    if cfg.sampler.kind in ("exact", "full_sum"):
        memory += int(objs.hilbert.n_states) * (objs.hilbert.n_sites + 32)
    return memory


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
    check_sites(cfg)
    dim = int(hilbert(cfg).n_states)
    if dim > max_dimension and cfg.n_sites > 64:
        raise InputError(
            "hilbert",
            f"dimension {dim:.4g} is too large for exact diagonalisation (limit "
            f"{max_dimension:.4g}; three vectors alone need "
            f"{3 * 16 * dim / 1024**3:.3g} GiB)",
        )
    lat = lattice(cfg)
    hil = hilbert(cfg, lat)
    ham = hamiltonian(cfg, hil, lat)
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
    #: ``nqs.symmetry.Sector`` of ``[symmetry]`` (None without the section)
    sector: Any = None
    #: ``nqs.parallel.SampleSharding`` of ``[parallel]`` (None on one device)
    sharding: Any = None


def objects(cfg: Config) -> Objects:
    """Build every object of ``cfg`` (raises ``InputError`` naming the key).

    The sizes are checked first (:func:`check_sizes`), so nothing too big is built.
    """
    check_sizes(cfg)
    from nqs import build_sectors

    lat = lattice(cfg)
    hil = hilbert(cfg, lat)
    ham = hamiltonian(cfg, hil, lat)
    sector = build_sectors.config_sector(cfg, lat, ham)
    return Objects(
        lattice=lat,
        hilbert=hil,
        hamiltonian=ham,
        model=model(cfg, hil, lat, sector),
        sampler=sampler(cfg, hil, lat, ham),
        optimizer=optimizer(cfg),
        sr=sr(cfg),
        observables=observables(cfg, hil, lat),
        sector=sector,
        sharding=sharding(cfg, hil),
    )


def sharding(cfg: Config, hil):
    """How ``[parallel]`` splits the samples over devices; None for one device.

    Chains (Metropolis, exact draws) are split evenly, so ``sampler.n_chains`` must
    be a multiple of the device count; a full sum splits its basis states over the
    largest device count that divides their number.

    Raises:
        InputError: more devices requested than visible (``parallel.devices``), or
            chains that do not split evenly (``sampler.n_chains``).
    """
    from nqs import parallel

    n_dev = parallel.n_devices(cfg.parallel.devices)
    if cfg.sampler.kind == "full_sum":
        n_states = int(hil.n_states)
        n_dev = max(d for d in range(1, n_dev + 1) if n_states % d == 0)
        return parallel.make_sharding(n_dev, axis=1)
    parallel.check_divisible(cfg.sampler.n_chains, n_dev)
    return parallel.make_sharding(n_dev)


def n_devices(objs: Objects) -> int:
    """Devices the samples are split over."""
    return 1 if objs.sharding is None else objs.sharding.n_devices


def _n_steps(cfg: Config) -> int:
    return int(getattr(cfg.driver, "n_steps", 1) or 1)


def check_sizes(cfg: Config) -> None:
    """Refuse what is too big to build or run, from the config alone (fast).

    Checks the number of sites (``nqs.lattice.MAX_SITES``), the size of the space the
    exact and full-sum samplers enumerate (``MAX_ENUMERATION``) and the Metropolis
    proposals of one step (``MAX_PROPOSALS_PER_STEP``); the memory of a step is checked
    once the objects exist (:func:`check_memory`).

    Raises:
        InputError: one line with the estimate and the limit.
    """
    n_sites = check_sites(cfg)
    s = cfg.sampler
    if s.kind == "exact":
        dim = hilbert(cfg).n_states
        if dim > MAX_ENUMERATION:
            raise InputError(
                "sampler.kind",
                f"the exact sampler enumerates all {dim:.4g} states at every step; "
                f'the limit is {MAX_ENUMERATION:,} (use kind = "metropolis")',
            )
        return
    if s.kind == "full_sum":
        dim = hilbert(cfg).n_states
        if dim > MAX_ENUMERATION:
            raise InputError(
                "sampler.kind",
                f"the full sum runs over all {dim:.4g} basis states at every step; "
                f'the limit is {MAX_ENUMERATION:,} (use kind = "metropolis")',
            )
        return
    per_chain = math.ceil(s.n_samples / s.n_chains) + s.n_discard_per_chain
    proposals = s.n_chains * per_chain * (s.sweep_size or n_sites)
    if proposals > MAX_PROPOSALS_PER_STEP:
        raise InputError(
            "sampler",
            f"one step would make {proposals:.3g} Metropolis proposals (n_chains x "
            "(n_samples / n_chains + n_discard_per_chain) x sweep_size), more than "
            f"the limit {MAX_PROPOSALS_PER_STEP:.0e}",
        )


def check_sites(cfg: Config) -> int:
    """``cfg.n_sites``, refused above ``nqs.lattice.MAX_SITES``."""
    from nqs import lattice as lat_mod

    n_sites = cfg.n_sites
    key = "lattice.n_sites" if cfg.lattice.kind == "custom" else "lattice.extent"
    with as_input_error(key):
        lat_mod.check_size(n_sites)
    return n_sites


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
            chunk_size=chunk_size(cfg, objs),
            observe_every=d.observables_every,
            safety=vmc.Safety(**d.safety()),
            sharding=objs.sharding,
        )


def chunk_size(cfg: Config, objs: Objects) -> int | None:
    """Rows per chunk of the per-sample work, over all devices: ``driver.chunk_size``
    (which is per device) times the device count, or when unset the largest that
    keeps the model's intermediates within ``nqs.drivers.vmc.ACTIVATION_BUDGET`` per
    device."""
    from nqs.drivers import vmc

    n_dev = n_devices(objs)
    if cfg.driver.chunk_size is not None:
        return cfg.driver.chunk_size * n_dev
    with as_input_error("model"):
        return vmc.auto_chunk_size(
            objs.model, objs.sampler, objs.hamiltonian, n_devices=n_dev
        )


def version() -> str:
    import nqs

    return nqs.__version__
