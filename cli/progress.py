"""Progress display of `nqs run`: a rich progress bar fed by the driver's reports."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn


def format_bytes(n: float) -> str:
    """Bytes as a short human-readable string (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"


def _num(x: Any, spec: str) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return format(x, spec) if math.isfinite(x) else "nan"


class Reporter:
    """Context manager turning ``progress`` records of a run into terminal output.

    Args:
        prep: ``nqs.prepare.Prepared`` of the run (for sizes in the header).
        run_dir: the run directory (shown in the header).
        quiet: print nothing (the caller prints the final line).
    """

    def __init__(self, prep, run_dir: Path, quiet: bool = False):
        self.prep = prep
        self.run_dir = run_dir
        self.quiet = quiet
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.progress: Progress | None = None
        self.task = None
        self.n_collapsed = 0
        self.n_rejected = 0

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    @property
    def dynamics(self) -> bool:
        return self.prep.cfg.driver.kind == "tdvp"

    def _header(self, record: dict) -> None:
        hil = self.prep.objects.hilbert
        cfg = self.prep.cfg
        dimension = Decimal(int(hil.n_states))  # exact: a float overflows at 2^1024
        if self.dynamics:
            d = cfg.driver
            self.console.print(
                f"{cfg.name}: {hil.n_sites} sites, dimension {dimension:.4g}, "
                f"{self.prep.n_parameters} parameters; {d.time}-time evolution of "
                f"{d.initial_state} to t = {d.t_end:g} ({d.integrator}, dt "
                f"{d.dt:g}) -> {self.run_dir}"
            )
            if record.get("row"):
                self.console.print(f"resuming at saved time {record['row']}")
            return
        sharding = self.prep.objects.sharding
        where = "" if sharding is None else f" per device on {sharding.n_devices}"
        self.console.print(
            f"{cfg.name}: {hil.n_sites} sites, dimension {dimension:.4g}, "
            f"{self.prep.n_parameters} parameters, "
            f"~{format_bytes(record['memory'])} per step{where} -> {self.run_dir}"
        )
        exact = record.get("exact_energy")
        if exact is None:
            self.console.print("exact energy: not computed (driver.exact)")
        else:
            self.console.print(
                f"exact energy: {exact:.10g} ({exact / hil.n_sites:.8g} per site)"
            )
        if record.get("step"):
            self.console.print(f"resuming at step {record['step']}")

    def _start(self, record: dict) -> None:
        if self.dynamics:
            self.progress = Progress(
                TextColumn("t"),
                TextColumn("{task.fields[t]}"),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[stats]}"),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task(
                "tdvp", total=record["t_end"], completed=0.0, t="", stats=""
            )
            return
        self.progress = Progress(
            TextColumn("step"),
            MofNCompleteColumn(),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[stats]}"),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "vmc", total=record["n_steps"], completed=record["step"], stats=""
        )

    def report(self, record: dict) -> None:
        """Callback given to the driver (see ``nqs.drivers.loop.run``)."""
        event = record.get("event")
        if self.quiet:
            return
        if event == "start":
            self._header(record)
            self._start(record)
        elif event == "step" and self.progress is not None:
            self._step(record)
        elif event == "end" and self.progress is not None:
            self.progress.stop()
            self.progress = None

    def _row(self, record: dict) -> None:
        stats = (
            f"E = {_num(record.get('energy/mean'), '.8g')} ± "
            f"{_num(record.get('energy/error'), '.2g')}  "
            f"residual {_num(record.get('residual'), '.2g')}  "
            f"dt {_num(record.get('dt'), '.3g')}  "
            f"{record.get('n_steps', 0)} steps"
        )
        if record.get("n_rejected"):
            stats += f" ({record['n_rejected']} rejected)"
        stats += f"  {_num(record.get('time_per_row'), '.3g')} s/row"
        t = record.get("t", 0.0)
        self.progress.update(
            self.task,
            completed=t,
            t=f"{_num(t, '.4f')}/{record['t_end']:g}",
            stats=stats,
        )

    def _step(self, record: dict) -> None:
        if self.dynamics:
            self._row(record)
            return
        stats = (
            f"E = {_num(record.get('energy/mean'), '.8g')} ± "
            f"{_num(record.get('energy/error'), '.2g')}  "
            f"var {_num(record.get('energy/variance'), '.3g')}  "
            f"acc {_num(record.get('acceptance'), '.2f')}  "
            f"{_num(record.get('time_per_step'), '.3g')} s/step"
        )
        if record.get("collapsed"):
            self.n_collapsed += 1
            if self.n_collapsed == 1 or self.n_collapsed % 50 == 0:
                self.progress.console.print(
                    f"[yellow]warning[/]: step {record['step']}: the sampler looks "
                    f"collapsed ({self.n_collapsed} step(s) so far): acceptance "
                    f"{_num(record.get('acceptance'), '.3g')}, R-hat "
                    f"{_num(record.get('energy/r_hat'), '.3g')}, variance "
                    f"{_num(record.get('energy/variance'), '.3g')}"
                )
            stats += "  [yellow]collapsed[/]"
        if record.get("rejected"):
            self.n_rejected += 1
            stats += "  [red]rejected[/]"
        self.progress.update(self.task, completed=record["step"] + 1, stats=stats)


def final_dynamics_line(summary, result) -> str:
    """One line of a finished evolution: time reached, steps, residual, drift, error."""
    d = summary.dynamics or {}
    parts = [
        f"{summary.name}: {result.status} at t = {_num(result.t, '.6g')}",
        f"{result.n_rows} saved times, {result.n_steps} steps "
        f"({result.n_rejected} rejected)",
        f"E = {_num(summary.energy, '.10g')} ± {_num(summary.energy_error, '.2g')}",
        f"max residual {_num(d.get('max_residual'), '.2g')}",
        f"energy drift {_num(d.get('energy_drift'), '.2g')}",
    ]
    for name, err in (d.get("max_error") or {}).items():
        parts.append(f"max |{name} - exact| {_num(err, '.2g')}")
    if result.compile_time is not None:
        parts.append(f"first row {_num(result.compile_time, '.3g')} s (compile)")
    parts.append(f"log {summary.path}")
    return "; ".join(parts)


def final_line(summary, result) -> str:
    """One line: status, steps, final energy ± error, per site, exact, timing.

    The timing is the first step (compile, or load from the compilation cache, plus
    one step) and the median time per step.
    """
    s = summary
    parts = [
        f"{s.name}: {result.status} at step {result.n_steps}",
        f"E = {_num(s.energy, '.10g')} ± {_num(s.energy_error, '.2g')}",
    ]
    if s.energy_per_site is not None:
        parts[-1] += f" ({_num(s.energy_per_site, '.8g')} per site)"
    if s.exact_energy is not None:
        parts.append(
            f"exact {_num(s.exact_energy, '.10g')}, relative error "
            f"{_num(s.relative_error, '.2g')}"
        )
    parts.append(f"V-score {_num(s.v_score, '.2g')}")
    if result.compile_time is not None:
        parts.append(f"first step {_num(result.compile_time, '.3g')} s (compile)")
    parts.append(f"{_num(s.time_per_step, '.3g')} s/step")
    if result.n_rejected or result.n_collapsed:
        parts.append(
            f"{result.n_rejected} rejected, {result.n_collapsed} collapsed steps"
        )
    parts.append(f"log {s.path}")
    return "; ".join(parts)
