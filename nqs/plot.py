"""PNG plots of run histories (matplotlib, Agg backend: no display needed).

``plot_runs`` draws a quantity (default the energy) against the step (or the time ``t``
of a dynamics run) with a ±error band for every run, overlaid; with the energy and a
known exact energy it adds the exact line and a log-scale panel of the relative error
|E - E_exact| / |E_exact|.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nqs.analysis import RunData
from nqs.errors import InputError


def quantities(run: RunData) -> list[str]:
    """Plottable names of ``run``: ``x`` for dataset ``x/mean`` or ``x``."""
    names = set()
    for key in run.history:
        head, _, tail = key.rpartition("/")
        if tail == "mean":
            names.add(head)
        elif not head and key not in ("step", "t"):
            names.add(key)
    return sorted(names)


def _series(run: RunData, quantity: str):
    h = run.history
    if f"{quantity}/mean" in h:
        y = np.real(np.asarray(h[f"{quantity}/mean"]))
        err = h.get(f"{quantity}/error")
        err = None if err is None else np.asarray(err, dtype=float)
    elif quantity in h and quantity not in ("step", "t"):
        y, err = np.asarray(h[quantity], dtype=float), None
    else:
        raise InputError(
            "--quantity",
            f"{quantity!r} is not in {run.path}; available: "
            + ", ".join(quantities(run)),
        )
    if "t" in h and len(h["t"]) == len(y):
        return np.asarray(h["t"], dtype=float), y, err, "time t"
    x = np.asarray(h.get("step", np.arange(len(y))), dtype=float)
    return x, y, err, "step"


def _labels(runs: Sequence[RunData]) -> list[str]:
    names = [r.name for r in runs]
    if len(set(names)) == len(names):
        return names
    return [str(r.path.parent) for r in runs]


def default_quantity(run: RunData) -> str:
    """The energy; for a dynamics run its first observable with an exact curve (else
    its first observable, else the energy)."""
    if run.attrs.get("driver") != "tdvp":
        return "energy"
    names = [q for q in quantities(run) if f"{q}/error" in run.history]
    names = [q for q in names if q != "energy"]
    with_exact = [q for q in names if q in run.exact_series]
    return (with_exact or names or ["energy"])[0]


def _exact_curve(run: RunData, quantity: str):
    """(t, values) of the stored exact evolution of ``quantity``, or None."""
    key = "energy_t" if quantity == "energy" else quantity
    ex = run.exact_series
    if "t" not in ex or key not in ex:
        return None
    return np.asarray(ex["t"], dtype=float), np.real(np.asarray(ex[key]))


def _plot_dynamics(runs, series, out, quantity, plt) -> Path:
    """⟨O⟩(t) of dynamics runs, the exact curves, and a panel of |⟨O⟩ - exact|."""
    curves = [_exact_curve(r, quantity) for r in runs]
    with_exact = any(c is not None for c in curves)
    nrows = 2 if with_exact else 1
    fig, axes = plt.subplots(
        nrows, 1, figsize=(7, 3.2 * nrows + 0.6), sharex=True, squeeze=False
    )
    ax = axes[0, 0]
    labels = _labels(runs)
    for label, (x, y, err, _), curve in zip(labels, series, curves, strict=True):
        (line,) = ax.plot(x, y, lw=1.4, marker=".", ms=3, label=label)
        if err is not None:
            ax.fill_between(x, y - err, y + err, color=line.get_color(), alpha=0.25)
        if curve is None:
            continue
        t_ex, y_ex = curve
        ax.plot(
            t_ex,
            y_ex,
            color="black" if len(runs) == 1 else line.get_color(),
            ls="--",
            lw=1,
            label="exact" if len(runs) == 1 else f"exact ({label})",
        )
        inside = (x >= t_ex[0]) & (x <= t_ex[-1])
        diff = np.abs(y[inside] - np.interp(x[inside], t_ex, y_ex))
        axes[1, 0].semilogy(
            x[inside], np.maximum(diff, 1e-16), color=line.get_color(), lw=1.2
        )
        if err is not None:
            axes[1, 0].semilogy(
                x[inside], err[inside], color=line.get_color(), lw=0.8, ls=":"
            )
    ax.set_ylabel("energy (total)" if quantity == "energy" else f"<{quantity}>")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    if with_exact:
        axes[1, 0].set_ylabel("|tVMC - exact| (dotted: error bar)")
        axes[1, 0].grid(alpha=0.3, which="both")
    axes[-1, 0].set_xlabel("time t")
    fig.suptitle(quantity if len(runs) > 1 else f"{runs[0].name}: {quantity}(t)")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_runs(
    runs: Sequence[RunData], out: str | Path, quantity: str | None = None
) -> Path:
    """Write a PNG of ``quantity`` vs step (or time) for ``runs``; return its path.

    ``quantity`` None: :func:`default_quantity` of the first run. Dynamics runs plot
    against the time with the exact curve and an error panel when stored.

    Raises:
        InputError: ``quantity`` is not logged by one of the runs.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if quantity is None:
        quantity = default_quantity(runs[0])
    series = [_series(r, quantity) for r in runs]
    if any(r.attrs.get("driver") == "tdvp" for r in runs):
        return _plot_dynamics(runs, series, out, quantity, plt)
    exacts = [r.exact_energy for r in runs] if quantity == "energy" else []
    with_exact = any(e is not None for e in exacts)
    nrows = 2 if with_exact else 1
    fig, axes = plt.subplots(
        nrows, 1, figsize=(7, 3.2 * nrows + 0.6), sharex=True, squeeze=False
    )
    ax = axes[0, 0]
    for run, label, (x, y, err, _) in zip(runs, _labels(runs), series, strict=True):
        (line,) = ax.plot(x, y, lw=1.2, label=label)
        if err is not None:
            ax.fill_between(x, y - err, y + err, color=line.get_color(), alpha=0.25)
        if quantity == "energy" and run.exact_energy is not None:
            ax.axhline(
                run.exact_energy,
                color=line.get_color(),
                ls="--",
                lw=1,
                label=f"exact ({label})" if len(runs) > 1 else "exact",
            )
            rel = np.abs(y - run.exact_energy) / abs(run.exact_energy)
            axes[1, 0].semilogy(x, np.maximum(rel, 1e-16), color=line.get_color())
    ylabel = "energy (total)" if quantity == "energy" else quantity
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    if with_exact:
        low = [np.nanpercentile(s[1], 1) for s in series]
        exact_min = min(e for e in exacts if e is not None)
        ax.set_ylim(bottom=min(min(low), exact_min) - 0.02 * abs(exact_min))
        axes[1, 0].set_ylabel("|E - E_exact| / |E_exact|")
        axes[1, 0].grid(alpha=0.3, which="both")
    axes[-1, 0].set_xlabel(series[0][3])
    fig.suptitle(quantity if len(runs) > 1 else f"{runs[0].name}: {quantity}")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
