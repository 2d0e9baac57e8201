"""Timing of the standard workloads (the library side of ``nqs bench``).

A workload is a shipped config (``configs/<name>.toml``) or a timing-only config of the
source tree (``benchmarks/workloads/<name>.toml``, e.g. ``heisenberg_chain_complex16``:
the complex RBM with the real workload's sampler). Its VMC step is built and
called once (compile time: trace + compile, or load from the persistent compilation
cache, + first step), then ``n_steps`` more times, each waited for with
``block_until_ready``; the reported time per step is the median.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import jax

from nqs.errors import InputError

#: The standard workloads, as config stems under ``configs/``.
STANDARD = ("tfim_chain", "heisenberg_chain")


def config_dir() -> Path:
    """The ``configs/`` directory of the source tree."""
    return Path(__file__).resolve().parent.parent / "configs"


def workload_dir() -> Path:
    """The ``benchmarks/workloads/`` directory of the source tree (timing configs)."""
    return Path(__file__).resolve().parent.parent / "benchmarks" / "workloads"


def resolve(name: str) -> Path:
    """A workload name (config stem in ``configs/``, else in ``benchmarks/workloads/``)
    or a path to a TOML file."""
    path = Path(name)
    if path.suffix == ".toml":
        return path
    for folder in (config_dir(), workload_dir()):
        path = folder / f"{name}.toml"
        if path.exists():
            return path
    stems = {p.stem for d in (config_dir(), workload_dir()) for p in d.glob("*.toml")}
    raise InputError(
        name, f"no such workload; expected one of {', '.join(sorted(stems))}"
    )


def bench_config(
    path: str | Path, n_steps: int = 20, overrides: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Time the VMC step of a config.

    Returns:
        {"name", "config", "n_sites", "n_parameters", "n_samples", "compile_time" (s,
        first call), "time_per_step" (s, median), "time_per_step_min",
        "samples_per_second", "steps"}.
    """
    from nqs import config as config_mod
    from nqs import prepare
    from nqs.drivers import vmc

    if n_steps < 1:
        raise InputError("--steps", f"must be >= 1, got {n_steps}")
    cfg = config_mod.load(path, overrides=overrides)
    prep = prepare.prepare(cfg)
    state = prep.state
    start = time.perf_counter()
    state, info = vmc.vmc_step(prep.problem, state)
    jax.block_until_ready((state, info))
    compile_time = time.perf_counter() - start
    times = []
    for _ in range(n_steps):
        start = time.perf_counter()
        state, info = vmc.vmc_step(prep.problem, state)
        jax.block_until_ready((state, info))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    n_samples = prep.problem.sampler.n_chains * prep.problem.sampler.n_samples_per_chain
    return {
        "name": cfg.name,
        "config": str(path),
        "n_sites": prep.objects.hilbert.n_sites,
        "n_parameters": prep.n_parameters,
        "n_samples": n_samples,
        "compile_time": compile_time,
        "time_per_step": median,
        "time_per_step_min": min(times),
        "samples_per_second": n_samples / median,
        "steps": n_steps,
    }


def machine() -> dict[str, Any]:
    """Machine, Python, package versions, JAX devices and the compilation cache."""
    versions = {}
    for pkg in ("nqs", "jax", "jaxlib", "flax", "optax", "numpy", "scipy", "h5py"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "versions": versions,
        "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),
        "compilation_cache": (
            jax.config.jax_compilation_cache_dir
            if jax.config.jax_enable_compilation_cache
            else None
        ),
    }
