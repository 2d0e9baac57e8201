"""The `nqs` Typer application: parse, load the config, build, call the library, print.

Exit codes: 0 success; 2 bad input (``InputError``: config key, value, file, existing
run directory), printed as one line ``error: <key or file>: <message>`` on stderr; 1 any
other failure. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer

from nqs.errors import InputError

from .progress import format_bytes

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
)

# Driver keys a resumed run may change (they do not alter the steps already taken).
_EARLY_STOP = ("early_stop", "patience", "rel_tol")

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a config key: dotted KEY=VALUE (TOML literal); repeat."
    ),
]
ConfigArg = Annotated[
    Path, typer.Argument(help="TOML config file.", show_default=False)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks on errors.")
    ] = False,
) -> None:
    """nqs: neural-network quantum states (VMC ground states and dynamics)."""
    ctx.obj = {"debug": debug}


@contextlib.contextmanager
def _errors(ctx: typer.Context) -> Iterator[None]:
    """Turn exceptions into one stderr line and the exit code (2 input, 1 other)."""
    debug = bool(ctx.obj and ctx.obj.get("debug"))
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except InputError as err:
        if debug:
            raise
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as err:
        if debug:
            raise
        typer.echo(f"error: {type(err).__name__}: {err} (rerun with --debug)", err=True)
        raise typer.Exit(1) from None


def _load(config: Path, overrides: list[str] | None):
    from nqs import config as config_mod

    return config_mod.load(config, overrides=overrides or [])


@app.command()
def info() -> None:
    """Versions of nqs and its numerical stack, and the devices JAX sees."""
    import jax

    import nqs

    typer.echo(f"nqs {nqs.__version__}")
    typer.echo(f"python {sys.version.split()[0]}")
    for pkg in ("jax", "jaxlib", "flax", "optax", "h5py", "numpy", "scipy"):
        try:
            typer.echo(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            typer.echo(f"{pkg} not installed")
    typer.echo("devices " + ", ".join(str(d) for d in jax.devices()))


@app.command()
def schema() -> None:
    """The JSON Schema of the config file (for editors and validators).

    Every key with its type, default, allowed values and description. Point an editor
    at it with a first line ``#:schema <path>`` in a TOML config (Taplo / Even Better
    TOML); the file ships as docs/nqs-config.schema.json.
    """
    from nqs.config import schema as schema_mod

    typer.echo(schema_mod.schema_text(), nl=False)


@app.command()
def check(
    ctx: typer.Context,
    config: ConfigArg,
    set_: SetOption = None,
    compile_: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="Also compile the step and print the memory XLA assigns it per "
            "device (exact; takes the compilation time).",
        ),
    ] = False,
) -> None:
    """Validate a config; print it resolved, with sizes and memory. Nothing runs.

    Prints the config with every default filled in (valid TOML), then as comments the
    number of sites, the Hilbert-space dimension (and, for a full-sum sampler, the
    number of basis states summed), the number of real parameters, the devices the
    samples are split over and an estimate of the memory one optimisation step needs
    on each (a quick upper bound; with --compile also XLA's own figure); with a
    [symmetry] section the group's order and the sector's dimension.
    """
    from nqs import build, build_sectors, parallel, prepare
    from nqs import config as config_mod

    with _errors(ctx):
        cfg = _load(config, set_)
        objs, memory = prepare.validate(cfg)
        hil = objs.hilbert
        n_params = build.n_parameters(objs.model, hil)
        sector = build_sectors.describe(cfg, objs)
        typer.echo(config_mod.resolved_toml(cfg), nl=False)
        typer.echo(f"\n# sites: {hil.n_sites}")
        typer.echo(f"# Hilbert-space dimension: {hil.n_states}")
        if cfg.sampler.kind == "full_sum":
            typer.echo(f"# full sum over {hil.n_states} basis states (no sampling)")
        typer.echo(f"# parameters (real): {n_params}")
        if sector is not None:
            typer.echo(f"# symmetry: {sector}")
        if cfg.driver.kind == "tdvp":
            typer.echo(f"# {_dynamics_check(cfg, config, objs)}")
        n_dev = build.n_devices(objs)
        typer.echo(f"# devices: {n_dev} of {parallel.describe_devices()}")
        where = " per device" if n_dev > 1 else ""
        if memory is not None:
            typer.echo(f"# memory per step: ~{format_bytes(memory)}{where} (bound)")
        if compile_:
            compiled = prepare.compiled_memory(prepare.prepare(cfg, config_path=config))
            typer.echo(f"# memory per step (compiled): {format_bytes(compiled)}{where}")


def _dynamics_check(cfg, config: Path, objs) -> str:
    """The initial state loads into the model; the save grid and the exact curve."""
    from nqs import build_dynamics

    params = build_dynamics.load_initial_params(cfg, objs, config)
    build_dynamics.tdvp_problem(cfg, objs, params)
    grid = build_dynamics.save_grid(cfg)
    d = cfg.driver
    exact = int(objs.hilbert.n_states) <= build_dynamics.exact_limit(cfg)
    return (
        f"{d.time}-time evolution of {d.initial_state} to t = {d.t_end:g} with "
        f"{d.integrator}, {grid.size} saved times"
        + ("; exact evolution stored" if exact else "")
    )


@app.command()
def exact(
    ctx: typer.Context,
    config: ConfigArg,
    set_: SetOption = None,
    as_json: JsonOption = False,
    sectors: Annotated[
        bool,
        typer.Option(
            "--sectors",
            help="Lowest energy of every symmetry sector (the [symmetry] group, or "
            "the largest the lattice and Hamiltonian allow).",
        ),
    ] = False,
) -> None:
    """Exact ground-state energy and gap by sparse diagonalisation (small systems).

    With a [symmetry] section: the lowest energies of that sector. With --sectors: a
    table of every sector (momentum, irrep, spin flip, dimension, lowest energy).
    Refuses (exit 2, with the memory estimate) a space too large to diagonalise.
    On a tdvp config: the exact energy and observables of the evolution of the
    initial state on the save grid (and the ground-state energy of the Hamiltonian).
    """
    from nqs import build, build_dynamics, build_sectors

    with _errors(ctx):
        cfg = _load(config, set_)
        if cfg.driver.kind == "tdvp" and not sectors and cfg.symmetry is None:
            res = build_dynamics.exact_dynamics_result(cfg, config)
            typer.echo(json.dumps(res) if as_json else _dynamics_table(cfg, res))
            return
        if sectors:
            res = build_sectors.exact_all_sectors(cfg)
        elif cfg.symmetry is not None:
            res = build_sectors.exact_in_sector(cfg)
        else:
            res = build.exact_result(cfg)
        if as_json:
            typer.echo(json.dumps(res))
            return
        what = "dimension"
        if "sector" in res:
            label = res["sector"]
            what = (
                f"sector k={label['momentum']} {label['irrep']}"
                + (
                    ""
                    if label["spin_flip"] is None
                    else f" flip={label['spin_flip']:+d}"
                )
                + ", dimension"
            )
        typer.echo(f"{cfg.name}: {res['n_sites']} sites, {what} {res['dimension']}")
        if sectors:
            typer.echo(_sector_table(res))
        typer.echo(f"E0       = {res['energy']:.12g}")
        typer.echo(f"E0/N     = {res['energy_per_site']:.12g}")
        if "gap" in res:
            typer.echo(f"E1       = {res['first_excited_energy']:.12g}")
            typer.echo(f"E1 - E0  = {res['gap']:.6g}")
        typer.echo(f"time     = {res['wall_time']:.3g} s")


def _dynamics_table(cfg, res: dict) -> str:
    """``nqs exact`` on a tdvp config: one line per saved time."""
    series = res["series"]
    names = [k for k in series if k != "t"]
    lines = [
        f"{cfg.name}: {res['n_sites']} sites, dimension {res['dimension']}, "
        f"{res['time']}-time evolution of {cfg.driver.initial_state}",
        f"E0 of H = {res['energy']:.12g} ({res['energy_per_site']:.10g} per site)",
        "       t  " + "  ".join(f"{n:>18}" for n in names),
    ]
    for i, t in enumerate(series["t"]):
        cells = []
        for n in names:
            v = series[n][i]
            cells.append(f"{v[0]:>+18.10g}" if isinstance(v, list) else f"{v:>18.12g}")
        lines.append(f"{t:8.4f}  " + "  ".join(cells))
    lines.append(f"time     = {res['wall_time']:.3g} s")
    return "\n".join(lines)


def _sector_table(res: dict) -> str:
    """Rows of ``nqs exact --sectors``, lowest energy first."""
    rows = sorted(
        res["sectors"], key=lambda r: (r["energy"] is None, r["energy"] or 0.0)
    )
    lines = [
        f"group {res['group']} (order {res['group_order']}), "
        f"{len(rows)} sectors (one momentum per star)",
        f"{'momentum':<12} {'irrep':<6} {'flip':>4} {'dimension':>10} "
        f"{'energy':>18}  star",
    ]
    for r in rows:
        flip = "" if r["spin_flip"] is None else f"{r['spin_flip']:+d}"
        energy = (
            f"{r['energy']:18.12g}"
            if r["energy"] is not None
            else f"{'(dim-' + str(r['irrep_dimension']) + ' irrep)':>18}"
        )
        lines.append(
            f"{str(r['momentum']):<12} {r['irrep']:<6} {flip:>4} "
            f"{r['dimension']:>10} {energy}  {len(r['star'])}"
        )
    return "\n".join(lines)


def _prepare_run_dir(run_dir: Path, resume: bool, force: bool) -> bool:
    """Refuse to clobber: an existing non-empty directory needs --resume or --force.

    Nothing is deleted here. Returns whether an old run is to be replaced (--force
    on an existing run directory; see ``_replacing``).
    """
    from nqs.drivers import loop

    exists = run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir()))
    is_run = (run_dir / loop.LOG_FILE).is_file()
    if resume:
        if not is_run:
            raise InputError(str(run_dir), "nothing to resume (no log.h5 there)")
        loop.check_resumable(run_dir)
        return False
    if not exists:
        return False
    if not force:
        raise InputError(
            str(run_dir),
            "run directory exists; use --resume to continue it or --force to "
            "overwrite it",
        )
    if not is_run:
        raise InputError(
            str(run_dir), "exists and is not an nqs run directory; not deleting it"
        )
    return True


@contextlib.contextmanager
def _replacing(run_dir: Path, replace: bool) -> Iterator[Callable[[dict], None]]:
    """Replace the old run in ``run_dir`` only once the new one has taken a step.

    The old directory is moved aside (a hidden sibling) when the new run starts,
    deleted after the new run's first step, and moved back if the new run fails
    before that. Yields the progress hook that notices the first step.
    """
    if not replace:
        yield lambda record: None
        return
    backup = run_dir.with_name(f".{run_dir.name}.replaced-{os.getpid()}")
    run_dir.rename(backup)
    pending = [backup]

    def on_progress(record: dict) -> None:
        if record.get("event") == "step" and pending:
            shutil.rmtree(pending.pop(), ignore_errors=True)

    try:
        yield on_progress
    except BaseException:
        if pending:
            shutil.rmtree(run_dir, ignore_errors=True)
            pending.pop().rename(run_dir)
        raise
    if pending:
        shutil.rmtree(pending.pop(), ignore_errors=True)


def _check_resume_config(run_dir: Path, cfg) -> None:
    """A resumed run must have the same config, except for the run length and the
    devices ([parallel]: a checkpoint resumes on any number of them)."""
    from nqs import analysis
    from nqs import config as config_mod

    stored = analysis.load_run(run_dir).attrs.get("config", "")
    if not isinstance(stored, str):
        return
    try:
        old = config_mod.to_dict(config_mod.loads(stored))
    except InputError:
        return
    new = config_mod.to_dict(cfg)
    free = {
        "n_steps",
        "t_end",
        "checkpoint_every",
        "flush_every",
        "exact",
        *_EARLY_STOP,
    }
    for section in sorted((set(old) | set(new)) - {"parallel"}):  # devices may change
        a, b = old.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                if a.get(k) != b.get(k) and not (section == "driver" and k in free):
                    raise InputError(
                        f"{section}.{k}",
                        f"differs from the run being resumed ({a.get(k)!r} there, "
                        f"{b.get(k)!r} now); start a new run instead",
                    )
        elif a != b:
            raise InputError(section, "differs from the run being resumed")


def _check_checkpoint(run_dir: Path, prep) -> None:
    """The checkpoint of a run to resume loads into the new run's state."""
    from nqs import checkpoint
    from nqs.drivers import loop

    checkpoint.load(run_dir / loop.CHECKPOINT_FILE, prep.state)


RunsArg = Annotated[
    list[Path],
    typer.Argument(help="Run directories (or their log.h5 files).", show_default=False),
]


@app.command()
def analyse(
    ctx: typer.Context,
    runs: RunsArg,
    as_json: JsonOption = False,
    last: Annotated[
        float,
        typer.Option(
            "--last", help="Fraction of the logged steps averaged for the final values."
        ),
    ] = 0.1,
) -> None:
    """Summaries: final energy ± error, variance, V-score, error to exact, R-hat.

    Values are averaged over the last --last fraction of the logged steps; the error
    bar accounts for the correlation between successive steps.
    """
    from nqs import analysis

    with _errors(ctx):
        summaries = [analysis.summarize(analysis.load_run(r), last) for r in runs]
        if as_json:
            data = [s.to_dict() for s in summaries]
            typer.echo(json.dumps(data[0] if len(data) == 1 else data, indent=2))
            return
        typer.echo("\n\n".join(analysis.format_summary(s) for s in summaries))


@app.command()
def plot(
    ctx: typer.Context,
    runs: RunsArg,
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="PNG file [default: <first run>/<q>.png]."),
    ] = None,
    quantity: Annotated[
        str | None,
        typer.Option(
            "--quantity",
            "-q",
            help="Logged quantity to plot [default: energy; for dynamics the first "
            "observable].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """PNG of a history (energy vs step with the exact line; for dynamics an
    observable vs time with the exact curve and an error panel); runs overlaid."""
    from nqs import analysis
    from nqs import plot as plot_mod

    with _errors(ctx):
        data = [analysis.load_run(r) for r in runs]
        if quantity is None:
            quantity = plot_mod.default_quantity(data[0])
        if out is None:
            out = data[0].path.parent / f"{quantity.replace('/', '_')}.png"
        if out.is_dir():
            raise InputError(str(out), "is a directory; expected a .png file name")
        if out.suffix.lower() != ".png":
            raise InputError(str(out), "expected a .png file name")
        if not out.parent.is_dir():
            raise InputError(str(out), "directory does not exist")
        try:
            written = plot_mod.plot_runs(data, out, quantity)
        except OSError as err:
            raise InputError(str(out), f"cannot write it ({err.strerror})") from err
        typer.echo(str(written))


@app.command()
def run(
    ctx: typer.Context,
    config: ConfigArg,
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="Run directory [default: runs/<name>]."),
    ] = None,
    set_: SetOption = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in the directory.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing run directory.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only the final summary line.")
    ] = False,
) -> None:
    """Run the driver the config names and write a run directory with log.h5.

    Shows a progress bar (energy ± error, variance, acceptance, time per step) and
    ends with a summary line. A run killed at any point continues with --resume.
    """
    from nqs import analysis, parallel, prepare

    from . import progress as progress_mod

    with _errors(ctx):
        if resume and force:
            raise InputError("--force", "cannot be combined with --resume")
        cfg = _load(config, set_)
        run_dir = out if out is not None else Path("runs") / cfg.name
        p = cfg.parallel
        parallel.initialize(p.coordinator, p.num_processes, p.process_id)
        writer = parallel.is_writer()  # process 0 writes; the others only compute
        # built and checked: nothing written before this
        prep = prepare.prepare(cfg, config_path=config)
        replace = _prepare_run_dir(run_dir, resume, force) if writer else False
        if resume:
            _check_resume_config(run_dir, cfg)
            _check_checkpoint(run_dir, prep)
        with (
            _replacing(run_dir, replace) as on_progress,
            progress_mod.Reporter(prep, run_dir, quiet=quiet or not writer) as reporter,
        ):

            def report(record: dict) -> None:
                on_progress(record)
                reporter.report(record)

            result = prepare.execute(prep, run_dir, resume=resume, progress=report)
        if not writer:
            return
        summary = analysis.summarize(analysis.load_run(run_dir))
        if cfg.driver.kind == "tdvp":
            typer.echo(progress_mod.final_dynamics_line(summary, result))
        else:
            typer.echo(progress_mod.final_line(summary, result))


@app.command()
def bench(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Workloads (config stems in configs/, or TOML paths) "
            "[default: tfim_chain heisenberg_chain].",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[
        int, typer.Option("--steps", help="Timed steps after compilation.")
    ] = 20,
    set_: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Time the standard workloads: compile time, time per step, samples per second."""
    from nqs import bench as bench_mod

    with _errors(ctx):
        paths = [bench_mod.resolve(n) for n in names or bench_mod.STANDARD]
        results = []
        for path in paths:
            res = bench_mod.bench_config(path, steps, tuple(set_ or ()))
            results.append(res)
            if not as_json:
                typer.echo(
                    f"{res['name']:<26} {res['n_sites']:>4} sites "
                    f"{res['n_parameters']:>7} params  compile "
                    f"{res['compile_time']:7.2f} s  step "
                    f"{res['time_per_step'] * 1e3:9.2f} ms  "
                    f"{res['samples_per_second']:10.4g} samples/s"
                )
        if as_json:
            typer.echo(
                json.dumps(
                    {"machine": bench_mod.machine(), "results": results}, indent=2
                )
            )


#: Threads of the BLAS/LAPACK library behind numpy, scipy and JAX's CPU linear algebra.
#: XLA already parallelises a step over the cores; BLAS threads on top of it fight for
#: them (a VMC step on two cores runs twice as slowly). Set only if the user has not.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


#: glibc ``mallopt`` parameters (``<malloc.h>``) and the values ``main`` sets: no
#: mmapped chunks, and free memory at the top of the heap returned to the system only
#: above 1 GiB.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
MALLOC_SETTINGS = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 1024**3))


def _keep_freed_memory() -> None:
    """Make glibc malloc keep freed memory for reuse instead of unmapping it.

    A process setting, not physics, hence here and not in ``nqs``: the library is
    also used from scripts and notebooks, whose process is theirs to configure. A
    compiled step allocates the same large temporaries (Jacobian, kernel, connected
    configurations) every call; by default glibc serves blocks above its mmap
    threshold with fresh ``mmap`` and returns them with ``munmap``, so every step
    page-faults its temporaries anew (zeroed by the kernel), and trims the heap top
    after it. Nothing happens on other C libraries (musl, macOS, Windows) or if
    the call fails.
    """
    import ctypes
    import platform

    try:
        if platform.libc_ver()[0] != "glibc":
            return
        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
        for param, value in MALLOC_SETTINGS:
            mallopt(param, value)
    except (AttributeError, OSError, ValueError):
        return


def main() -> None:
    """Console entry point: malloc settings, BLAS threads, 64-bit JAX, the
    compilation cache, the app.

    The persistent compilation cache lives in ``$NQS_CACHE_DIR`` (default
    ``$XDG_CACHE_HOME/nqs/jax``, else ``~/.cache/nqs/jax``); ``NQS_NO_CACHE=1`` turns
    it off.
    """
    import os

    _keep_freed_memory()
    for variable in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(variable, "1")
    import jax

    from nqs import compile_cache

    jax.config.update("jax_enable_x64", True)
    cache_dir = None
    if os.environ.get("NQS_NO_CACHE", "").strip() in ("", "0"):
        xdg = os.environ.get("XDG_CACHE_HOME")
        default = compile_cache.default_directory(
            Path(xdg) if xdg else None, Path.home()
        )
        cache_dir = Path(os.environ.get("NQS_CACHE_DIR") or default)
    compile_cache.enable(cache_dir)
    app()
