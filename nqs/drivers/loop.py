"""The host loop of a VMC run: HDF5 log, checkpoints, progress reports, resume.

``run`` calls the compiled ``nqs.drivers.vmc.vmc_step`` once per step and does only
host work around it: a log row per step (flushed every ``flush_every`` steps by an
atomic rewrite of ``log.h5``), an atomic checkpoint every ``checkpoint_every``
steps, progress callbacks, early stopping, and on resume the truncation of log rows
written after the last checkpoint. The run directory holds ``log.h5``,
``checkpoint.npz`` and, at the end, ``final_state.npz``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nqs import checkpoint, parallel
from nqs import log as logmod
from nqs.drivers.thresholds import EarlyStop
from nqs.drivers.vmc import (
    VMCProblem,
    VMCState,
    estimate_memory,
    n_parameters,
    shard_state,
    vmc_step,
)
from nqs.errors import InputError

CHECKPOINT_FILE = "checkpoint.npz"
FINAL_STATE_FILE = "final_state.npz"
LOG_FILE = "log.h5"
MAX_EXACT_DIMENSION = 200_000


class DivergenceError(RuntimeError):
    """Too many consecutive rejected steps; the log holds every step so far."""


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What ``run`` returns.

    Attributes:
        state: final VMCState.
        status: "completed" | "converged".
        n_steps: steps done in total (including earlier runs when resumed).
        exact_energy: exact ground-state energy or None.
        memory: estimated peak bytes per step.
        wall_time: seconds spent in this call.
        n_rejected: rejected steps in total.
        n_collapsed: logged steps flagged as collapsed in this call.
        compile_time: seconds of this call's first step (tracing, compiling or
            loading the step from the compilation cache, and running it once);
            None if no step was run.
    """

    state: VMCState
    status: str
    n_steps: int
    exact_energy: float | None
    memory: int
    wall_time: float
    n_rejected: int
    n_collapsed: int
    compile_time: float | None = None


def compute_exact_energy(
    hamiltonian, max_dimension: int = MAX_EXACT_DIMENSION
) -> float | None:
    """Exact ground-state energy by sparse diagonalisation, None if the space is big."""
    from nqs import exact

    if int(hamiltonian.hilbert.n_states) > max_dimension:
        return None
    energies, _ = exact.ground_state(hamiltonian, k=1)
    return float(np.real(energies[0]))


def load_final_params(run_dir: str | Path, like: Any) -> Any:
    """Final parameters a finished run saved (structured like ``like``)."""
    return checkpoint.load(Path(run_dir) / FINAL_STATE_FILE, like)


def _is_hermitian(op) -> bool:
    """Whether an observable is Hermitian (its mean is then logged as float64)."""
    test = getattr(op, "is_hermitian", None)
    return bool(test()) if callable(test) else False


def _host_row(info: dict, real_keys: set[str]) -> dict[str, Any]:
    row = {}
    for key, value in jax.device_get(parallel.to_host(info)).items():
        v = np.asarray(value).item()
        if key in real_keys or (isinstance(v, complex) and v.imag == 0):
            v = v.real if isinstance(v, complex) else v
        row[key] = v
    return row


def save_state(path: Path, tree: Any) -> None:
    """Checkpoint ``tree`` (gathered from every process; written by process 0)."""
    host = parallel.to_host(tree)
    if parallel.is_writer():
        checkpoint.save(path, host)


class NoWriter:
    """The log writer of processes other than 0: they write nothing."""

    def append(self, row) -> None:
        pass

    def flush(self) -> None:
        pass


def log_writer(path: Path, flush_every: int):
    """``nqs.log.LogWriter`` on process 0, :class:`NoWriter` elsewhere."""
    if parallel.is_writer():
        return logmod.LogWriter(path, flush_every)
    return NoWriter()


def resume_from(ckpt: Path, log_path: Path, problem, state, shard, n_rows) -> Any:
    """The checkpointed state placed on this run's devices (``shard(problem,
    state)``); on process 0 the log is cut after the checkpoint's rows
    (``n_rows(state)``) and, when the run now uses other devices than the log
    records, a note says so (``nqs.log.add_note``)."""
    state = shard(problem, checkpoint.load(ckpt, state))
    if parallel.is_writer():
        rows = int(parallel.to_host(n_rows(state)))
        logmod.truncate(log_path, rows)
        before = logmod.read_attrs(log_path).get("devices")
        now = parallel.device_string(problem.sharding)
        if before is not None and before != now:
            note = f"row {rows}: resumed on {now} (was {before}); chains re-split"
            logmod.add_note(log_path, note)
    return state


def _converged(energies: list[float], rule: EarlyStop) -> bool:
    half = rule.patience // 2
    if half < 2 or len(energies) < 2 * half:
        return False
    new = np.asarray(energies[-half:])
    old = np.asarray(energies[-2 * half : -half])
    err = np.sqrt(new.var() / half + old.var() / half)
    return new.mean() > old.mean() - rule.rel_tol * abs(new.mean()) - 2 * err


def check_resumable(run_dir: str | Path) -> None:
    """Refuse to resume a run directory without its log or its checkpoint.

    Raises:
        InputError: naming the missing file.
    """
    run_dir = Path(run_dir)
    if not (run_dir / LOG_FILE).is_file():
        raise InputError(str(run_dir / LOG_FILE), "nothing to resume (no log there)")
    if not (run_dir / CHECKPOINT_FILE).is_file():
        raise InputError(
            str(run_dir / CHECKPOINT_FILE),
            "no checkpoint to resume from (the run stopped before its first one); "
            "start it again with --force",
        )


def _open_run(
    problem,
    state,
    run_dir,
    *,
    config_text,
    resume,
    exact_energy,
    max_exact_dimension,
    log_attrs,
):
    """Create or resume the run directory; returns (state, exact, wall offset)."""
    log_path, ckpt = run_dir / LOG_FILE, run_dir / CHECKPOINT_FILE
    if resume:
        check_resumable(run_dir)
        state = resume_from(
            ckpt, log_path, problem, state, shard_state, lambda st: st.step
        )
        data = logmod.read_log(log_path)
        exact = data["exact"].get("energy", exact_energy)
        wall = data["history"].get("wall_time", np.zeros(0))
        offset = float(wall[-1]) if wall.size else 0.0
        return state, exact, offset
    attrs = {"n_parameters": n_parameters(state.params)}
    attrs["n_sites"] = int(problem.sampler.hilbert.n_sites)
    attrs["devices"] = parallel.device_string(problem.sharding)
    attrs.update(log_attrs or {})
    exact = exact_energy
    if exact is None:
        exact = compute_exact_energy(problem.hamiltonian, max_exact_dimension)
    if parallel.is_writer():
        logmod.create_log(log_path, config_text=config_text, driver="vmc", attrs=attrs)
        if exact is not None:
            logmod.write_exact(log_path, exact)
    return state, exact, 0.0


def run(
    problem: VMCProblem,
    state: VMCState,
    run_dir: str | Path,
    n_steps: int,
    *,
    config_text: str = "",
    resume: bool = False,
    checkpoint_every: int = 50,
    flush_every: int = 10,
    progress: Callable[[dict], None] | None = None,
    exact_energy: float | None = None,
    max_exact_dimension: int = MAX_EXACT_DIMENSION,
    early_stop: EarlyStop | None = None,
    log_attrs: dict | None = None,
) -> RunResult:
    """Run VMC until ``state.step == n_steps``, logging to ``run_dir/log.h5``.

    The exact energy is computed at the start when the (constrained) Hilbert space
    has at most ``max_exact_dimension`` states (unless given) and stored in the log.
    Checkpoints (``checkpoint.npz``) are written atomically every ``checkpoint_every``
    steps after flushing the log; at the end the parameters are saved to
    ``final_state.npz`` (see :func:`load_final_params`).

    Args:
        problem: static description; ``state``: initial state (also the template
            the checkpoint is loaded into when resuming).
        run_dir: run directory (created if missing; an existing log is replaced
            unless resuming).
        n_steps: total number of steps (a resumed run continues up to it).
        config_text: resolved TOML stored in the log.
        resume: continue from the checkpoint in ``run_dir`` (log rows after it are
            dropped); refused (``InputError``) if there is no log or checkpoint.
        checkpoint_every, flush_every: periods in steps.
        progress: called with dicts: ``{"event": "start", "step", "n_steps",
            "memory", "exact_energy"}``, then per step the log row plus
            ``"event": "step"``, ``"time_per_step"`` (s), ``"n_steps"``, and finally
            ``{"event": "end", "status", "compile_time", ...}``.
        exact_energy: known exact energy (skips the diagonalisation).
        early_stop: optional convergence criterion.
        log_attrs: extra root attributes of a new log.
    Returns:
        RunResult.
    Raises:
        DivergenceError: ``safety.max_consecutive_rejections`` bad steps in a row
            (the log is flushed first; the last checkpoint stays the last good one).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    memory = estimate_memory(problem)
    state, exact, offset = _open_run(
        problem,
        state,
        run_dir,
        config_text=config_text,
        resume=resume,
        exact_energy=exact_energy,
        max_exact_dimension=max_exact_dimension,
        log_attrs=log_attrs,
    )
    state = dataclasses.replace(
        state, exact_energy=jnp.asarray(np.nan if exact is None else exact, jnp.float64)
    )
    report = progress or (lambda record: None)
    report(
        {
            "event": "start",
            "step": int(state.step),
            "n_steps": n_steps,
            "memory": memory,
            "exact_energy": exact,
        }
    )
    writer = log_writer(run_dir / LOG_FILE, flush_every)
    ckpt = run_dir / CHECKPOINT_FILE
    real_keys = {f"{n}/mean" for n, op in problem.observables if _is_hermitian(op)}
    start = time.perf_counter()
    energies: list[float] = []
    status, n_collapsed = "completed", 0
    compile_time = None
    step = int(state.step)
    try:
        while step < n_steps:
            t = time.perf_counter()
            state, info = vmc_step(problem, state)
            row = _host_row(info, real_keys)
            row["wall_time"] = offset + time.perf_counter() - start
            writer.append(row)
            step = int(state.step)
            if compile_time is None:
                compile_time = time.perf_counter() - t
            n_collapsed += bool(row["collapsed"])
            if not row["rejected"]:
                energies.append(row["energy/mean"])
            report(
                {
                    **row,
                    "event": "step",
                    "n_steps": n_steps,
                    "time_per_step": time.perf_counter() - t,
                }
            )
            if row["n_consecutive"] >= problem.safety.max_consecutive_rejections:
                writer.flush()
                raise DivergenceError(
                    f"step {row['step']}: {row['n_consecutive']} consecutive steps "
                    "rejected (non-finite or exploding energy/update); the log holds "
                    f"every step, the last checkpoint is the last good state ({ckpt})"
                )
            if step % checkpoint_every == 0:
                writer.flush()
                save_state(ckpt, state)
            if early_stop is not None and _converged(energies, early_stop):
                status = "converged"
                break
    except BaseException:  # interrupted (Ctrl-C, error): keep every finished step
        with contextlib.suppress(Exception):
            writer.flush()
        raise
    writer.flush()
    save_state(ckpt, state)
    save_state(run_dir / FINAL_STATE_FILE, state.params)
    result = RunResult(
        state=state,
        status=status,
        n_steps=step,
        exact_energy=exact,
        memory=memory,
        wall_time=time.perf_counter() - start,
        n_rejected=int(state.n_rejected),
        n_collapsed=n_collapsed,
        compile_time=compile_time,
    )
    report(
        {
            "event": "end",
            "status": status,
            "step": step,
            "n_steps": n_steps,
            "n_rejected": result.n_rejected,
            "n_collapsed": n_collapsed,
            "compile_time": compile_time,
        }
    )
    return result
