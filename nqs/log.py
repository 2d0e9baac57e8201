"""The HDF5 run log ``log.h5``: the only module of nqs that touches HDF5.

Schema (``format = "nqs-log"``, ``format_version = 2``)
-------------------------------------------------------
Root attributes (strings unless noted):
    format          "nqs-log"
    format_version  int, 2 (1: the same without the dynamics entries; read alike)
    config          the resolved TOML config of the run (every default filled in)
    nqs_version     ``nqs.__version__``
    jax_version     ``jax.__version__``
    devices         the JAX devices the run computes on, e.g. "cpu:0, cpu:1"
    notes           (when present) one line per event worth knowing, e.g. a resume
                    on another number of devices
    created         creation time, ISO 8601 UTC
    driver          "vmc" or "tdvp"
    (extra attributes a driver passes, e.g. n_sites (int), n_parameters (int))

Group ``history``: one row per logged step; every dataset is one-dimensional,
chunked and growable (``maxshape = (None,)``), and all have the same length.
    step                 int64, optimisation step (VMC) or index of the saved time
                         (dynamics: row k is time t[k] of the save grid)
    wall_time            float64, seconds since the start of the (first) run
    energy/mean          float64, Monte Carlo mean of the local energy (real part;
                         the imaginary part of a Hermitian H's estimate is noise)
    energy/error         float64, standard error of the mean (autocorrelation-corrected)
    energy/variance      float64, variance of the local energy
    energy/tau_corr      float64, integrated autocorrelation time
    energy/r_hat         float64, split-R-hat over chains
    acceptance           float64, Metropolis acceptance of the step's sampling
    <observable>/mean    float64, or complex128 for non-Hermitian observables;
                         NaN on steps where it was not measured
    <observable>/error   float64
    diag_shift           float64, SR diagonal shift used (VMC)
    grad_norm            float64, norm of the energy gradient (VMC)
    rejected             int8, 1 if the step's update was rejected and rolled back
    n_rejected           int64, rejected steps so far
    collapsed            int8, 1 if the sampler looks collapsed (see nqs.drivers.vmc)
Dynamics (``driver = "tdvp"``) rows are the saved times; energy, acceptance and
observables are measured there on fresh samples, the diagnostics aggregate the
integrator steps since the previous row (NaN in row 0, before any step):
    t                    float64, the saved time
    dt                   float64, the last step taken
    steps                int64, integrator steps since the previous row
    rejected             int64, rejected adaptive attempts since the previous row
    n_steps, n_rejected  int64, totals so far
    residual             float64, largest relative TDVP residual of those steps
                         (0: exact derivative within the manifold, 1: none of it)
    n_modes              int64, fewest modes of S kept by the regularisation
    snr_min, snr_median  float64, signal-to-noise spectrum of the force (solver
                         pinv with Monte Carlo samples; NaN otherwise)
Missing values are NaN (floats) or -1 (integers).

Group ``exact``:
    energy               float64 scalar, exact ground-state energy (total), when known
    t                    float64 (n_t,), dynamics: the save grid of the exact evolution
    energy_t             float64 (n_t,), dynamics: exact <H>(t) of the initial state
    <observable>         float64 or complex128 (n_t,), dynamics: exact <O>(t)

Crash safety: rows are buffered in memory and written every few steps by
``append_rows``, which copies the log to a temporary file in the same directory,
appends, fsyncs and ``os.replace``-s it over ``log.h5``. The file on disk is therefore
always a complete HDF5 file, also after ``kill -9``, holding every row up to the last
flush, and readers (``read_log``) never see a half-written file.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nqs import atomic

FORMAT = "nqs-log"
FORMAT_VERSION = 2
#: Versions this module (and ``nqs analyse``) reads.
READABLE_VERSIONS = (1, 2)
CHUNK_ROWS = 256


@contextlib.contextmanager
def _rewrite(path: Path) -> Iterator[h5py.File]:
    """Open a copy of ``path`` for writing; atomically replace ``path`` on success."""
    with atomic.replacing(path) as tmp:
        if path.exists():
            shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+" if path.exists() else "w") as f:
            yield f
            f.flush()


def _device_string() -> str:
    import jax

    return ", ".join(f"{d.platform}:{d.id}" for d in jax.devices())


def create_log(
    path: str | os.PathLike,
    *,
    config_text: str,
    driver: str,
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Create (or overwrite) an empty log with the root attributes of the schema."""
    import jax

    import nqs

    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    with _rewrite(path) as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["config"] = config_text
        f.attrs["nqs_version"] = nqs.__version__
        f.attrs["jax_version"] = jax.__version__
        f.attrs["devices"] = _device_string()
        f.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        f.attrs["driver"] = driver
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        f.create_group("history")


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The root attributes of a log (strings and numbers)."""
    with h5py.File(path, "r") as f:
        return {k: _py(v) for k, v in f.attrs.items()}


def add_note(path: str | os.PathLike, line: str) -> None:
    """Append a line to the root attribute ``notes``."""
    with _rewrite(Path(path)) as f:
        old = _py(f.attrs["notes"]) if "notes" in f.attrs else ""
        f.attrs["notes"] = f"{old}\n{line}" if old else line


def write_exact(path: str | os.PathLike, energy: float) -> None:
    """Store the exact ground-state energy as ``exact/energy``."""
    with _rewrite(Path(path)) as f:
        grp = f.require_group("exact")
        if "energy" in grp:
            del grp["energy"]
        grp.create_dataset("energy", data=np.float64(energy))


def write_exact_series(path: str | os.PathLike, series: Mapping[str, Any]) -> None:
    """Store exact time series (``t``, ``energy_t``, observables) under ``exact``."""
    with _rewrite(Path(path)) as f:
        grp = f.require_group("exact")
        for key, values in series.items():
            if key in grp:
                del grp[key]
            grp.create_dataset(key, data=np.asarray(values))


def _fill_value(dtype: np.dtype):
    if np.issubdtype(dtype, np.complexfloating):
        return complex(np.nan, np.nan)
    if np.issubdtype(dtype, np.floating):
        return np.nan
    return -1


def _column_dtype(values: Sequence[Any]) -> np.dtype:
    arr = np.asarray([v for v in values if v is not None])
    if np.issubdtype(arr.dtype, np.complexfloating):
        return np.dtype(np.complex128)
    if np.issubdtype(arr.dtype, np.floating):
        return np.dtype(np.float64)
    if arr.dtype == np.bool_:
        return np.dtype(np.int8)
    return np.dtype(np.int64)


def append_rows(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append ``rows`` (dicts of scalars keyed by history paths) to ``history``.

    A key seen for the first time creates a dataset padded with the missing value for
    the earlier rows; a key absent from a row gets the missing value.
    """
    if not rows:
        return
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with _rewrite(Path(path)) as f:
        hist = f.require_group("history")
        n_old = hist["step"].shape[0] if "step" in hist else 0
        for key in keys:
            values = [row.get(key) for row in rows]
            if key not in hist:
                dtype = _column_dtype(values)
                hist.create_dataset(
                    key,
                    shape=(n_old,),
                    maxshape=(None,),
                    chunks=(CHUNK_ROWS,),
                    dtype=dtype,
                    fillvalue=_fill_value(dtype),
                )
        for key in _dataset_names(hist):
            ds = hist[key]
            fill = _fill_value(ds.dtype)
            col = np.asarray(
                [fill if row.get(key) is None else row[key] for row in rows]
            )
            if np.issubdtype(ds.dtype, np.floating) and np.iscomplexobj(col):
                col = col.real
            ds.resize((n_old + len(rows),))
            ds[n_old:] = col.astype(ds.dtype)


def _dataset_names(group: h5py.Group) -> list[str]:
    names: list[str] = []
    group.visititems(
        lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
    )
    return names


def truncate(path: str | os.PathLike, step: int) -> int:
    """Drop the history rows with ``step >= step`` (for resuming from a checkpoint).

    Returns:
        number of rows kept.
    """
    path = Path(path)
    with h5py.File(path, "r") as f:
        steps = f["history/step"][()] if "history/step" in f else np.zeros(0, int)
    n_keep = int(np.count_nonzero(steps < step))
    if n_keep == steps.size:
        return n_keep
    with _rewrite(path) as f:
        hist = f["history"]
        for key in _dataset_names(hist):
            hist[key].resize((n_keep,))
    return n_keep


def read_log(path: str | os.PathLike) -> dict[str, Any]:
    """Everything in a log, as numpy.

    Returns:
        {"attrs": {root attributes}, "history": {"step": (n,) int64,
        "energy/mean": (n,) float64, ...} (keys are paths under ``history``),
        "exact": {"energy": float} or {}}.
    Raises:
        ValueError: the file is not an nqs log.
    """
    with h5py.File(path, "r") as f:
        attrs = {k: _py(v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: not an nqs log (format {attrs.get('format')!r})")
        history = {}
        if "history" in f:
            for key in _dataset_names(f["history"]):
                history[key] = f["history"][key][()]
        exact = {}
        if "exact" in f:
            for key in _dataset_names(f["exact"]):
                exact[key] = _py(f["exact"][key][()])
    return {"attrs": attrs, "history": history, "exact": exact}


def _py(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


class LogWriter:
    """Buffers rows in memory and appends them every ``flush_every`` rows.

    Args:
        path: the ``log.h5`` (created beforehand with :func:`create_log`).
        flush_every: rows buffered before a write.
    """

    def __init__(self, path: str | os.PathLike, flush_every: int = 10):
        self.path = Path(path)
        self.flush_every = max(1, int(flush_every))
        self._rows: list[dict[str, Any]] = []

    def append(self, row: Mapping[str, Any]) -> None:
        """Buffer one row; write the buffer when it is full."""
        self._rows.append(dict(row))
        if len(self._rows) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write all buffered rows to disk."""
        rows, self._rows = self._rows, []
        append_rows(self.path, rows)
