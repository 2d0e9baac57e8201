"""The host loop of a TDVP run: save grid, HDF5 log, checkpoints, resume, exact curves.

``run`` calls the compiled ``nqs.drivers.tdvp.advance`` once per saved time and does
only host work around it: one log row per saved time (flushed every ``flush_every``
rows), an atomic checkpoint every ``checkpoint_every`` rows, progress callbacks, and
on resume the truncation of rows written after the last checkpoint. The checkpoint
holds the whole state (parameters, chains and PRNG key, integrator state), so a
resumed evolution continues on the same grid to the same result as an uninterrupted
one. The run directory has the layout of a VMC run (``nqs.drivers.loop``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nqs import log as logmod
from nqs import parallel
from nqs.drivers.loop import (
    CHECKPOINT_FILE,
    FINAL_STATE_FILE,
    LOG_FILE,
    _host_row,
    _is_hermitian,
    check_resumable,
    log_writer,
    resume_from,
    save_state,
)
from nqs.drivers.tdvp import TDVPProblem, TDVPState, advance, shard_state


class EvolutionError(RuntimeError):
    """The evolution became non-finite; the log holds every row so far."""


@dataclasses.dataclass(frozen=True)
class EvolutionResult:
    """What ``run`` returns.

    Attributes:
        state: final TDVPState.
        status: "completed".
        n_rows: saved rows in total (including earlier runs when resumed).
        t: time reached.
        n_steps, n_rejected: integrator steps and rejected attempts in total.
        wall_time: seconds spent in this call.
        compile_time: seconds of this call's first row (tracing, compiling or
            loading, and running it once); None if no row was computed.
        exact_energy: exact ground-state energy of the evolution's Hamiltonian, or
            None.
    """

    state: TDVPState
    status: str
    n_rows: int
    t: float
    n_steps: int
    n_rejected: int
    wall_time: float
    compile_time: float | None = None
    exact_energy: float | None = None


def save_times(t_end: float, save_every: float | None, dt: float) -> np.ndarray:
    """The save grid t_k = k · save_every (k = 0, 1, ...), ending exactly at t_end.

    ``save_every = None`` saves after every step of ``dt``. A last interval shorter
    than ``save_every`` (t_end not on the grid) ends at t_end.

    Returns:
        (n_rows,) float64, starting at 0.
    """
    h = dt if save_every is None else save_every
    n = math.floor(t_end / h + 1e-9)
    grid = h * np.arange(n + 1, dtype=np.float64)
    if t_end - grid[-1] > 1e-9 * h:
        return np.append(grid, t_end)
    grid[-1] = t_end
    return grid


def _open_run(problem, state, run_dir, *, config_text, resume, log_attrs, exact):
    """Create or resume the run directory; returns (state, wall offset)."""
    log_path, ckpt = run_dir / LOG_FILE, run_dir / CHECKPOINT_FILE
    if resume:
        check_resumable(run_dir)
        state = resume_from(
            ckpt, log_path, problem, state, shard_state, lambda st: st.n_rows
        )
        wall = logmod.read_log(log_path)["history"].get("wall_time", np.zeros(0))
        return state, float(wall[-1]) if wall.size else 0.0
    if not parallel.is_writer():
        return state, 0.0
    attrs = {"devices": parallel.device_string(problem.sharding), **(log_attrs or {})}
    logmod.create_log(log_path, config_text=config_text, driver="tdvp", attrs=attrs)
    if exact is not None:
        energy = exact.pop("ground_energy", None)
        if energy is not None:
            logmod.write_exact(log_path, energy)
        logmod.write_exact_series(log_path, exact)
    return state, 0.0


def run(
    problem: TDVPProblem,
    state: TDVPState,
    run_dir: str | Path,
    grid: np.ndarray,
    *,
    config_text: str = "",
    resume: bool = False,
    checkpoint_every: int = 50,
    flush_every: int = 10,
    progress: Callable[[dict], None] | None = None,
    exact: dict[str, Any] | None = None,
    log_attrs: dict | None = None,
    save_every_step: bool = False,
) -> EvolutionResult:
    """Evolve ``state`` over the save grid, logging one row per saved time.

    Args:
        problem: static description; ``state``: the state at t = grid[0] (also the
            template the checkpoint is loaded into when resuming).
        run_dir: run directory (created if missing; an existing log is replaced
            unless resuming).
        grid: (n_rows,) ascending saved times (:func:`save_times`), grid[0] the
            initial time; with ``save_every_step`` only grid[-1] (the end) is used
            and a row is saved after every accepted step.
        config_text: resolved TOML stored in the log.
        resume: continue from the checkpoint in ``run_dir``.
        checkpoint_every, flush_every: periods in rows.
        progress: called with ``{"event": "start", "t_end", ...}``, then per row the
            log row plus ``"event": "step"``, ``"t_end"``, ``"time_per_row"``, and
            finally ``{"event": "end", ...}``.
        exact: exact curves stored in a new log (``{"t", "energy_t", <obs>...}``
            and optionally ``"ground_energy"``), or None.
        log_attrs: extra root attributes of a new log.
        save_every_step: a row after every adaptive step instead of on the grid.
    Returns:
        EvolutionResult.
    Raises:
        EvolutionError: the parameters or the energy became non-finite (the log is
            flushed first).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    exact = None if exact is None else dict(exact)
    ground = None if exact is None else exact.get("ground_energy")
    state, offset = _open_run(
        problem,
        state,
        run_dir,
        config_text=config_text,
        resume=resume,
        log_attrs=log_attrs,
        exact=exact,
    )
    t_end = float(grid[-1])
    report = progress or (lambda record: None)
    report({"event": "start", "row": int(state.n_rows), "t_end": t_end})
    writer = log_writer(run_dir / LOG_FILE, flush_every)
    ckpt = run_dir / CHECKPOINT_FILE
    real_keys = {f"{n}/mean" for n, op in problem.observables if _is_hermitian(op)}
    start = time.perf_counter()
    compile_time = None

    def next_target(k: int) -> tuple[float, int | None]:
        if save_every_step:
            return (float(grid[0]), None) if k == 0 else (t_end, 1)
        return float(grid[k]), None

    def done(k: int, t: float) -> bool:
        if save_every_step:
            return k > 0 and t >= t_end
        return k >= grid.size

    try:
        k, t = int(state.n_rows), float(state.integ.t)
        while not done(k, t):
            target, max_steps = next_target(k)
            tic = time.perf_counter()
            state, info = advance(problem, state, target, max_steps)
            row = _host_row(info, real_keys)
            row["step"] = k
            row["wall_time"] = offset + time.perf_counter() - start
            writer.append(row)
            if compile_time is None:
                compile_time = time.perf_counter() - tic
            k, t = int(state.n_rows), float(row["t"])
            report(
                {
                    **row,
                    "event": "step",
                    "t_end": t_end,
                    "time_per_row": time.perf_counter() - tic,
                }
            )
            if not np.isfinite(row["energy/mean"]):
                writer.flush()
                raise EvolutionError(
                    f"t = {t:.6g}: the energy is not finite (the evolution diverged; "
                    "a larger preconditioner.diag_shift, a smaller driver.dt or an "
                    "adaptive integrator may help); the log holds every row, the "
                    f"last checkpoint is the last good state ({ckpt})"
                )
            if k % checkpoint_every == 0:
                writer.flush()
                save_state(ckpt, state)
    except BaseException:  # interrupted (Ctrl-C, error): keep every finished row
        with contextlib.suppress(Exception):
            writer.flush()
        raise
    writer.flush()
    save_state(ckpt, state)
    save_state(run_dir / FINAL_STATE_FILE, state.params)
    result = EvolutionResult(
        state=state,
        status="completed",
        n_rows=k,
        t=float(state.integ.t),
        n_steps=int(state.n_steps),
        n_rejected=int(state.n_rejected),
        wall_time=time.perf_counter() - start,
        compile_time=compile_time,
        exact_energy=ground,
    )
    report(
        {
            "event": "end",
            "status": result.status,
            "t": result.t,
            "n_rows": k,
            "n_steps": result.n_steps,
            "n_rejected": result.n_rejected,
            "compile_time": compile_time,
        }
    )
    return result
