"""Summaries of run logs: final energy over a window, V-score, error to exact, R-hat.

The final energy is the mean of the logged per-step energies over the last
``fraction`` of the logged steps. Successive steps are correlated (the parameters move
slowly, and the Markov chains of step t seed step t + 1), so the error of that mean is
the larger of two estimates of the error of a correlated series: the integrated
autocorrelation time with Sokal's window (``nqs.stats.statistics`` on the window as one
chain) and batch means (``n_b ~ sqrt(n)`` contiguous batches,
``std(batch means) / sqrt(n_b)``); it is never reported below the error of independent
steps, ``sqrt(mean(sigma_t^2) / n)``. Windows much shorter than the correlation time
of the series still underestimate the error: average over more steps (``--last``).
Works on a log still being written (reads whatever was flushed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from nqs import stats
from nqs.errors import InputError

#: Window used by ``summarize`` when none is given: the last 10% of the logged steps.
DEFAULT_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class RunData:
    """Everything ``analysis`` and ``plot`` read from one log.

    Attributes:
        path: the ``log.h5`` file.
        name: run name (config ``name``, else the directory name).
        attrs: root attributes of the log (``config`` holds the resolved TOML).
        history: ``{"step": (n,), "energy/mean": (n,), ...}`` float/int numpy arrays,
            one entry per logged dataset (group paths joined by "/").
        exact_energy: exact ground-state energy when logged, else None.
        exact_series: dynamics: ``{"t": (n_t,), "energy_t": (n_t,), <obs>: (n_t,)}``
            exact evolution when logged, else {}.
    """

    path: Path
    name: str
    attrs: dict[str, Any]
    history: dict[str, np.ndarray]
    exact_energy: float | None
    exact_series: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config stored in the log, as a TOML dict ({} if absent)."""
        import tomllib

        text = self.attrs.get("config", "")
        try:
            return tomllib.loads(text) if text else {}
        except tomllib.TOMLDecodeError:
            return {}


@dataclasses.dataclass(frozen=True)
class Summary:
    """Summary of one run (energies are totals; ``*_per_site`` divide by n_sites)."""

    name: str
    path: str
    driver: str
    n_steps: int  # steps logged
    last_step: int
    window: int  # steps averaged
    n_sites: int | None
    energy: float
    energy_error: float
    energy_per_site: float | None
    energy_per_site_error: float | None
    variance: float
    v_score: float | None  # N Var(E) / E^2
    exact_energy: float | None
    relative_error: float | None  # |E - E_exact| / |E_exact|
    r_hat: float | None
    acceptance: float | None
    time_per_step: float | None  # seconds, median over the window
    collapsed: bool
    settings: dict[str, Any]
    dynamics: dict[str, Any] | None = None  # tdvp runs (see dynamics_summary)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN → None)."""
        out = dataclasses.asdict(self)
        return {k: _json_float(v) for k, v in out.items()}


def _json_float(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _json_float(x) for k, x in v.items()}
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _max_finite(x) -> float | None:
    x = np.asarray(x, dtype=float) if x is not None else np.zeros(0)
    x = x[np.isfinite(x)]
    return float(x.max()) if x.size else None


def dynamics_summary(run: RunData) -> dict[str, Any]:
    """What a tdvp log says about its evolution.

    Returns:
        {"time": "real" | "imaginary", "t_reached", "n_saved", "n_steps",
        "n_rejected", "max_residual" (largest relative TDVP residual),
        "energy_drift" (max |E(t) - E(0)| / |E(0)|: conserved in real time),
        "max_error": {name: max over the saved times of |<O>(t) - exact| (exact
        curves interpolated onto the saved times), for the energy and every
        observable with a stored exact curve}}; entries None when not logged.
    """
    h = run.history
    t = np.asarray(h.get("t", np.zeros(0)), dtype=float)
    energy = np.real(np.asarray(h.get("energy/mean", np.zeros(0))))
    drift = None
    if energy.size and np.isfinite(energy[0]) and energy[0] != 0:
        drift = _max_finite(np.abs(energy - energy[0]) / abs(energy[0]))

    def last(key: str) -> int:
        return int(np.asarray(h[key])[-1]) if key in h and len(h[key]) else 0

    max_error: dict[str, float | None] = {}
    ex = run.exact_series
    if "t" in ex and t.size:
        t_ex = np.asarray(ex["t"], dtype=float)
        inside = (t >= t_ex[0] - 1e-12) & (t <= t_ex[-1] + 1e-12)
        pairs = [("energy", "energy_t", "energy/mean")] + [
            (k, k, f"{k}/mean") for k in ex if k not in ("t", "energy_t")
        ]
        for name, exact_key, hist_key in pairs:
            if hist_key not in h or exact_key not in ex:
                continue
            ref = np.asarray(ex[exact_key])
            val = np.asarray(h[hist_key])
            if not np.iscomplexobj(ref):
                val = np.real(val)
            interp = np.interp(t[inside], t_ex, ref.real)
            if np.iscomplexobj(ref):
                interp = interp + 1j * np.interp(t[inside], t_ex, ref.imag)
            max_error[name] = _max_finite(np.abs(val[inside] - interp))
    cfg = run.config.get("driver", {})
    return {
        "time": cfg.get("time", run.attrs.get("time")),
        "t_reached": float(t[-1]) if t.size else None,
        "n_saved": int(t.size),
        "n_steps": last("n_steps"),
        "n_rejected": last("n_rejected"),
        "max_residual": _max_finite(h.get("residual")),
        "energy_drift": drift,
        "max_error": max_error,
    }


def window_average(
    values: np.ndarray, errors: np.ndarray | None, fraction: float
) -> tuple[float, float, int]:
    """Mean of the last ``fraction`` of a series, with a batch-means error.

    Args:
        values: (n,) float64 per-step estimates (NaN entries are dropped).
        errors: (n,) float64 per-step Monte Carlo errors, or None.
        fraction: share of the series to average, in (0, 1].
    Returns:
        (mean, error, n_window); error = max(Sokal error, batch-means error,
        sqrt(mean(errors^2)/n_window)), NaN for an empty series.
    """
    values = np.asarray(values, dtype=float)
    keep = np.isfinite(values)
    values = values[keep]
    errors = None if errors is None else np.asarray(errors, dtype=float)[keep]
    n = values.size
    if n == 0:
        return math.nan, math.nan, 0
    n_win = max(1, math.ceil(fraction * n))
    window = values[-n_win:]
    mean = float(window.mean())
    floor = 0.0
    if errors is not None:
        err = errors[-n_win:]
        err = err[np.isfinite(err)]
        if err.size:
            floor = float(np.sqrt(np.mean(err**2) / n_win))
    if n_win < 4:
        return mean, floor if errors is not None else math.nan, n_win
    n_b = min(max(int(math.isqrt(n_win)), 2), 32)
    size = n_win // n_b
    batches = window[n_win - n_b * size :].reshape(n_b, size).mean(axis=1)
    batch_error = float(batches.std(ddof=1) / math.sqrt(n_b))
    sokal_error = float(stats.statistics(jnp.asarray(window)[None, :]).error)
    return mean, max(batch_error, sokal_error, floor), n_win


def _window_mean(history: dict[str, np.ndarray], key: str, n_win: int):
    x = history.get(key)
    if x is None or np.size(x) == 0:
        return None
    x = np.asarray(x, dtype=float)[-n_win:]
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def _time_per_step(history: dict[str, np.ndarray], n_win: int) -> float | None:
    wall, step = history.get("wall_time"), history.get("step")
    if wall is None or step is None or len(wall) < 2:
        return None
    wall = np.asarray(wall, float)[-(n_win + 1) :]
    step = np.asarray(step, float)[-(n_win + 1) :]
    rate = np.diff(wall) / np.maximum(np.diff(step), 1)
    rate = rate[np.isfinite(rate) & (rate > 0)]
    return float(np.median(rate)) if rate.size else None


def _settings(cfg: dict[str, Any]) -> dict[str, Any]:
    picks = {
        "lattice": ("kind", "extent"),
        "hamiltonian": ("kind",),
        "model": ("kind", "param_dtype", "alpha"),
        "sampler": ("kind", "rule", "n_samples", "n_chains"),
        "optimizer": ("kind", "learning_rate"),
        "preconditioner": ("kind", "diag_shift", "solver"),
    }
    out = {}
    for section, keys in picks.items():
        table = cfg.get(section)
        for k in keys if isinstance(table, dict) else ():
            v = table.get(k)
            if v is not None:
                out[f"{section}.{k}"] = v
    return out


def _n_sites(run: RunData) -> int | None:
    if "n_sites" in run.attrs:
        return int(run.attrs["n_sites"])
    from nqs import config as config_mod

    try:
        return config_mod.loads(run.attrs.get("config", "")).n_sites
    except InputError:
        return None


def is_collapsed(run: RunData, n_win: int) -> bool:
    """True if the chains look stuck over the window (log flag, or zero acceptance and
    zero variance together: the sampler no longer moves)."""
    flag = run.history.get("collapsed")
    if flag is not None and np.size(flag) and bool(np.any(np.asarray(flag)[-n_win:])):
        return True
    acc = _window_mean(run.history, "acceptance", n_win)
    var = _window_mean(run.history, "energy/variance", n_win)
    return acc is not None and var is not None and acc < 1e-3 and var < 1e-12


def summarize(run: RunData, fraction: float = DEFAULT_FRACTION) -> Summary:
    """Summary of ``run`` averaged over the last ``fraction`` of its logged steps.

    Raises:
        InputError: ``fraction`` outside (0, 1], or a log without energies.
    """
    if not 0 < fraction <= 1:
        raise InputError("--last", f"expected a fraction in (0, 1], got {fraction}")
    h = run.history
    if "energy/mean" not in h:
        raise InputError(str(run.path), "no history/energy in this log")
    dynamics = None
    if run.attrs.get("driver") == "tdvp":
        dynamics = dynamics_summary(run)
        fraction = 1.0 / max(1, len(h["energy/mean"]))  # the last saved time
    energy, error, n_win = window_average(
        np.real(h["energy/mean"]), h.get("energy/error"), fraction
    )
    variance = _window_mean(h, "energy/variance", n_win)
    n_sites = _n_sites(run)
    exact = run.exact_energy
    if dynamics is not None and dynamics["time"] != "imaginary":
        exact = None  # real time: the ground-state energy is no reference
    steps = np.asarray(h.get("step", np.arange(len(h["energy/mean"]))))
    per_site = (lambda x: x / n_sites) if n_sites else (lambda x: None)
    v_score = None
    if n_sites and variance is not None and energy:
        v_score = n_sites * variance / energy**2
    return Summary(
        name=run.name,
        path=str(run.path),
        driver=str(run.attrs.get("driver", "vmc")),
        n_steps=int(steps.size),
        last_step=int(steps[-1]) if steps.size else -1,
        window=n_win,
        n_sites=n_sites,
        energy=energy,
        energy_error=error,
        energy_per_site=per_site(energy),
        energy_per_site_error=per_site(error),
        variance=math.nan if variance is None else variance,
        v_score=v_score,
        exact_energy=exact,
        relative_error=None if exact is None else abs(energy - exact) / abs(exact),
        r_hat=_window_mean(h, "energy/r_hat", n_win),
        acceptance=_window_mean(h, "acceptance", n_win),
        time_per_step=_time_per_step(h, n_win),
        collapsed=is_collapsed(run, n_win),
        settings=_settings(run.config),
        dynamics=dynamics,
    )


def _fmt(x: float | None, spec: str = ".6g") -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, spec)


def format_summary(s: Summary) -> str:
    """Human-readable multi-line summary."""
    lines = [f"{s.name}  ({s.path})"]
    lines.append(
        f"  steps      {s.n_steps} logged, last step {s.last_step}, "
        f"averaged over the last {s.window}"
    )
    lines.append(
        f"  energy     {_fmt(s.energy, '.8g')} ± {_fmt(s.energy_error, '.2g')}"
    )
    if s.energy_per_site is not None:
        lines.append(
            f"  per site   {_fmt(s.energy_per_site, '.8g')} ± "
            f"{_fmt(s.energy_per_site_error, '.2g')}  ({s.n_sites} sites)"
        )
    lines.append(f"  variance   {_fmt(s.variance)}   V-score {_fmt(s.v_score, '.3g')}")
    if s.exact_energy is not None:
        lines.append(
            f"  exact      {_fmt(s.exact_energy, '.10g')}   relative error "
            f"{_fmt(s.relative_error, '.3g')}"
        )
    lines.append(
        f"  R-hat      {_fmt(s.r_hat, '.4f')}   acceptance "
        f"{_fmt(s.acceptance, '.3f')}   time/step {_fmt(s.time_per_step, '.3g')} s"
    )
    if s.dynamics is not None:
        lines.extend(_dynamics_lines(s.dynamics))
    if s.collapsed:
        lines.append("  WARNING    the sampler looks collapsed (no moves accepted)")
    if s.settings:
        lines.append(
            "  settings   " + ", ".join(f"{k}={v}" for k, v in s.settings.items())
        )
    return "\n".join(lines)


def _dynamics_lines(d: dict[str, Any]) -> list[str]:
    lines = [
        f"  dynamics   {d['time']} time, t reached {_fmt(d['t_reached'], '.6g')}, "
        f"{d['n_saved']} saved times, {d['n_steps']} steps, "
        f"{d['n_rejected']} rejected",
        f"  residual   max {_fmt(d['max_residual'], '.3g')}   energy drift "
        f"{_fmt(d['energy_drift'], '.3g')}",
    ]
    for name, err in d["max_error"].items():
        lines.append(f"  vs exact   max |{name} - exact| = {_fmt(err, '.3g')}")
    return lines


def load_run(path: str | Path) -> RunData:
    """Read a run directory (or its ``log.h5``) through ``nqs.log.read_log``.

    The log must have the schema of ``nqs.log``: ``format = "nqs-log"``, a text
    ``config``, a ``history`` of one-dimensional numeric datasets of equal length
    and a scalar ``exact/energy`` if any.

    Raises:
        InputError: missing path, or a file that is not an nqs log (key = the path).
    """
    from nqs import log

    path = Path(path)
    file = path / "log.h5" if path.is_dir() else path
    if not file.exists():
        raise InputError(str(file), "no such run log")
    try:
        data = log.read_log(file)
    except ValueError as err:
        raise InputError(str(file), "not an nqs log") from err
    except OSError as err:
        raise InputError(str(file), f"not a readable HDF5 log ({err})") from err
    except Exception as err:  # h5py on odd objects: KeyError, TypeError, ...
        raise InputError(
            str(file), f"not an nqs log ({type(err).__name__}: {err})"
        ) from err
    import tomllib

    attrs, history, exact = _checked_log(file, data)
    series = {
        k: np.asarray(v)
        for k, v in data.get("exact", {}).items()
        if k != "energy" and np.ndim(v) == 1
    }
    name = None
    with contextlib.suppress(tomllib.TOMLDecodeError):
        name = tomllib.loads(attrs.get("config", "")).get("name")
    return RunData(
        path=file,
        name=name if isinstance(name, str) and name else file.parent.name,
        attrs=attrs,
        history=history,
        exact_energy=exact,
        exact_series=series,
    )


def _checked_log(file: Path, data: dict) -> tuple[dict, dict, float | None]:
    """(attrs, history, exact energy) of ``read_log`` output, checked against the
    schema (raises ``InputError(file, "not an nqs log (...)")``)."""

    def refuse(why: str):
        raise InputError(str(file), f"not an nqs log ({why})")

    attrs = dict(data.get("attrs", {}))
    if not isinstance(attrs.get("config", ""), str):
        refuse("its config attribute is not text")
    history, lengths = {}, set()
    for key, value in data.get("history", {}).items():
        arr = np.asarray(value)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.number):
            refuse(f"history/{key} is not a numeric series")
        history[key] = arr
        lengths.add(arr.size)
    if len(lengths) > 1:
        refuse("its history datasets differ in length")
    exact = data.get("exact", {}).get("energy")
    if exact is not None:
        arr = np.asarray(exact)
        if arr.shape != () or not np.issubdtype(arr.dtype, np.number):
            refuse("exact/energy is not a number")
        exact = float(np.real(arr))
    return attrs, history, exact
