"""Config → a checked, runnable problem, then the run.

Everything ``nqs check`` and ``nqs run`` verify before a file is written or deleted
(:func:`validate`: sizes from the config alone, every object built, the memory of a
step, one trial evaluation of model, optimizer and observables), the prepared VMC
problem with its initial state (:func:`prepare`), and the run itself (:func:`execute`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from nqs.build import (
    MAX_EXACT_DIMENSION,
    Objects,
    _n_steps,
    _optimizer_table,
    as_input_error,
    keyed,
    memory_per_step,
    objects,
    vmc_problem,
)
from nqs.config import Config
from nqs.errors import InputError


def memory_limit() -> int:
    """Bytes of memory this machine has (its cgroup limit when lower)."""
    import os

    total = 16 * 1024**3
    with contextlib.suppress(ValueError, OSError, AttributeError):
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    with contextlib.suppress(ValueError, OSError):
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text.isdigit():
            total = min(total, int(text))
    return total


def check_memory(cfg: Config, objs: Objects, limit: int | None = None) -> int | None:
    """Refuse a step whose estimated memory exceeds ``limit`` (default the machine's).

    Returns:
        The estimate in bytes (None for a driver without an estimate).
    Raises:
        InputError: key ``sampler.n_samples`` (``sampler.kind`` for the full sum, which
            has no sample count), with the estimate and the limit.
    """
    with keyed("model"):  # the estimate traces the model (abstractly)
        try:
            memory = memory_per_step(cfg, objs)
        except SystemExit as err:  # user code of a custom model
            raise InputError(
                "model", f"model {cfg.model.kind!r}: SystemExit({err.code}) when called"
            ) from err
    limit = memory_limit() if limit is None else limit
    if memory is not None and memory > limit:
        gib = 1024**3
        full_sum = cfg.sampler.kind == "full_sum"
        fewer = 'kind = "metropolis"' if full_sum else "fewer samples"
        raise InputError(
            "sampler.kind" if full_sum else "sampler.n_samples",
            f"one step needs about {memory / gib:.3g} GiB, more than the "
            f"{limit / gib:.3g} GiB of this machine; use {fewer} or a smaller "
            "model, or set driver.chunk_size",
        )
    return memory


def probe(cfg: Config, objs: Objects, key: jax.Array | None = None) -> dict:
    """Run the model, optimizer and observables once on a dummy batch.

    The model is initialised and applied on 3 random valid configurations (shape,
    dtype and finiteness of the log-amplitudes checked), the optimizer and its
    schedules do one ``init`` + ``update`` on those parameters, and every
    observable gives finite local estimates on the batch.

    Returns:
        The trial variables of the model.
    Raises:
        InputError: naming the key (``model.<arg>``, ``optimizer.<arg>``,
            ``observables.<name>``...).
    """
    from nqs import models, vstate
    from nqs import optimizer as opt_mod

    key = jax.random.key(0) if key is None else key
    m, hil = cfg.model, objs.hilbert
    sigma = jax.jit(hil.random_states, static_argnums=1)(key, 3).astype(jnp.int8)
    with keyed("model"):
        _, variables = models.build_checked(
            m.kind,
            hil,
            key,
            sigma=sigma,
            lattice=objs.lattice,
            sector=objs.sector,
            symmetrize=m.symmetrize,
            param_dtype=m.param_dtype,
            **m.kwargs,
        )
    with keyed("optimizer"):
        opt_mod.check_optimizer(_optimizer_table(cfg), variables, _n_steps(cfg))
    for name, op in objs.observables.items():
        try:
            values = vstate.local_estimates(objs.model, variables, sigma, op)
            finite = bool(jnp.all(jnp.isfinite(values)))
        except Exception as err:  # an operator that cannot act on this space
            raise InputError(
                f"observables.{name}", f"cannot be measured: {err}"
            ) from err
        if not finite:
            raise InputError(
                f"observables.{name}", "local estimates on a trial batch are not finite"
            )
    return variables


def validate(cfg: Config) -> tuple[Objects, int | None]:
    """Everything ``nqs check`` and ``nqs run`` check before writing anything.

    Sizes (:func:`check_sizes`), every object built (:func:`objects`), the memory
    of a step (:func:`check_memory`) and one trial evaluation (:func:`probe`).

    Returns:
        (objects, estimated bytes per step or None).
    """
    objs = objects(cfg)
    memory = check_memory(cfg, objs)
    probe(cfg, objs)
    return objs, memory


class Prepared(NamedTuple):
    """A built VMC run, ready to start (see :func:`prepare` and :func:`execute`)."""

    cfg: Config
    objects: Objects
    problem: Any
    state: Any
    n_parameters: int


def prepare(cfg: Config, config_path: str | Path | None = None) -> Prepared:
    """Build the problem and its initial state (PRNG key from ``cfg.seed``); nothing is
    written. Raises ``InputError`` for bad input.

    ``config_path`` (the config file) is where a relative ``driver.initial_state`` of
    a tdvp config is looked for when it is not in the working directory."""
    if cfg.driver.kind == "tdvp":
        return _prepare_tdvp(cfg, config_path)
    from nqs.drivers import vmc

    objs, _ = validate(cfg)
    problem = vmc_problem(cfg, objs)
    with as_input_error("model"):
        state = vmc.init_state(problem, jax.random.key(cfg.seed))
    return Prepared(cfg, objs, problem, state, vmc.n_parameters(state.params))


def _prepare_tdvp(cfg: Config, config_path) -> Prepared:
    from nqs import build_dynamics
    from nqs.drivers import tdvp, vmc

    objs, _ = validate(cfg)
    params = build_dynamics.load_initial_params(cfg, objs, config_path)
    problem = build_dynamics.tdvp_problem(cfg, objs, params)
    _, k_sampler = jax.random.split(jax.random.key(cfg.seed))
    with as_input_error("model"):
        state = tdvp.init_state(problem, k_sampler, params)
    return Prepared(cfg, objs, problem, state, vmc.n_parameters(params))


def compiled_memory(prep: Prepared) -> int:
    """Bytes one step takes on each device, from XLA's buffer assignment.

    Compiles the step (a VMC step, or a TDVP advance to the first saved time) ahead
    of time and sums its arguments, outputs and temporaries as XLA lays them out,
    fusion and chunking included; per device when the samples are split. Unlike
    ``nqs.drivers.vmc.estimate_memory``, which is a quick upper bound from the
    model's jaxpr (XLA often fuses or tiles what it counts), this is what the
    step allocates, without the runtime's fixed few hundred MB.
    """
    if prep.cfg.driver.kind == "tdvp":
        from nqs import build_dynamics
        from nqs.drivers import tdvp

        grid = build_dynamics.save_grid(prep.cfg)
        t_next = float(grid[1]) if grid.size > 1 else float(grid[0])
        lowered = tdvp.advance.lower(prep.problem, prep.state, t_next, None)
    else:
        from nqs.drivers import vmc

        lowered = vmc.vmc_step.lower(prep.problem, prep.state)
    stats = lowered.compile().memory_analysis()
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
    )


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
    from nqs import build_sectors
    from nqs import config as config_mod
    from nqs.drivers import loop

    if prep.cfg.driver.kind == "tdvp":
        return _execute_tdvp(prep, run_dir, resume=resume, progress=progress)
    d = prep.cfg.driver
    early = None
    if d.early_stop:
        early = loop.EarlyStop(patience=d.patience, rel_tol=d.rel_tol)
    limit, exact = exact_limit(prep.cfg), None
    if prep.objects.sector is not None:  # the sector's energy, not the space's
        if not resume:
            exact = build_sectors.run_exact_energy(prep.cfg, prep.objects, limit)
        limit = 0
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
        exact_energy=exact,
        max_exact_dimension=limit,
        early_stop=early,
        log_attrs={"seed": prep.cfg.seed, "name": prep.cfg.name},
    )


def _execute_tdvp(prep: Prepared, run_dir, *, resume: bool, progress):
    """Run a prepared evolution (``nqs.drivers.tdvp_loop.run``)."""
    from nqs import build_dynamics
    from nqs import config as config_mod
    from nqs.drivers import tdvp_loop

    cfg, d = prep.cfg, prep.cfg.driver
    grid = build_dynamics.save_grid(cfg)
    exact = None
    dim = int(prep.objects.hilbert.n_states)
    if not resume and dim <= build_dynamics.exact_limit(cfg):
        params = prep.state.params
        exact = build_dynamics.exact_dynamics(cfg, prep.objects, params, grid)
    return tdvp_loop.run(
        prep.problem,
        prep.state,
        run_dir,
        grid,
        config_text=config_mod.resolved_toml(cfg),
        resume=resume,
        checkpoint_every=d.checkpoint_every,
        flush_every=d.flush_every,
        progress=progress,
        exact=exact,
        log_attrs={
            "seed": cfg.seed,
            "name": cfg.name,
            "n_sites": int(prep.objects.hilbert.n_sites),
            "n_parameters": prep.n_parameters,
            "time": d.time,
        },
        save_every_step=d.adaptive and d.save_every_t is None,
    )
