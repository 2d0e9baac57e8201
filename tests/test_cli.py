"""The `nqs` command line: help, info, exact (against dense ED built here with numpy
Kronecker products), check, and the end-to-end run → analyse → plot → resume cycle."""

import json
import math
from functools import reduce
from pathlib import Path

import numpy as np
import pytest
from nqs_cli.app import app
from typer.testing import CliRunner

ROOT = Path(__file__).parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))

SX = np.array([[0.0, 1.0], [1.0, 0.0]])
SY = np.array([[0.0, -1j], [1j, 0.0]])
SZ = np.array([[1.0, 0.0], [0.0, -1.0]])


def _site_op(op, i, n):
    mats = [np.eye(2)] * n
    mats[i] = op
    return reduce(np.kron, mats)


def _dense_tfim(n, J, h):
    """H = -J sum_i Z_i Z_{i+1} - h sum_i X_i on a periodic chain."""
    H = np.zeros((2**n, 2**n))
    for i in range(n):
        H -= J * _site_op(SZ, i, n) @ _site_op(SZ, (i + 1) % n, n)
        H -= h * _site_op(SX, i, n)
    return H


def _dense_heisenberg(n, J):
    """H = J sum_i S_i . S_{i+1} (S = sigma / 2) on a periodic chain."""
    H = np.zeros((2**n, 2**n), dtype=complex)
    for i in range(n):
        for s in (SX, SY, SZ):
            H += J / 4 * _site_op(s, i, n) @ _site_op(s, (i + 1) % n, n)
    return H


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_help():
    result = _invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "analyse", "plot", "exact", "check", "bench", "info"):
        assert command in result.stdout
        sub = _invoke(command, "--help")
        assert sub.exit_code == 0, (command, sub.output)
        assert "Usage" in sub.stdout


def test_info_lists_versions():
    import jax

    result = _invoke("info")
    assert result.exit_code == 0
    assert f"jax {jax.__version__}" in result.stdout
    assert "devices" in result.stdout


TFIM6 = """
[lattice]
kind = "chain"
extent = [6]
[hamiltonian]
kind = "ising"
J = 1.0
h = 0.7
"""

HEIS8 = """
[lattice]
kind = "chain"
extent = [8]
[hilbert]
total_sz = 0
[hamiltonian]
kind = "heisenberg"
J = 1.0
"""


@pytest.mark.parametrize(
    "text, dense, n",
    [
        (TFIM6, lambda: _dense_tfim(6, 1.0, 0.7), 6),
        (HEIS8, lambda: _dense_heisenberg(8, 1.0), 8),
        (HEIS8.replace("J = 1.0", 'J = 1.0\nsign_rule = "marshall"'), None, 8),
    ],
    ids=["tfim-6", "heisenberg-8", "heisenberg-8-marshall"],
)
def test_exact_matches_dense(tmp_path, text, dense, n):
    result = _invoke("exact", _write(tmp_path, text), "--json")
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)
    H = _dense_heisenberg(8, 1.0) if dense is None else dense()
    levels = np.linalg.eigvalsh(H)
    if "total_sz" in text:  # ground state of the S^z = 0 sector
        mz = sum(np.diag(_site_op(SZ, i, n)).real for i in range(n))
        sector = np.flatnonzero(mz == 0)
        levels = np.linalg.eigvalsh(H[np.ix_(sector, sector)])
        assert res["dimension"] == math.comb(n, n // 2)
    else:
        assert res["dimension"] == 2**n
    assert res["energy"] == pytest.approx(levels[0], abs=1e-9)
    assert res["energy_per_site"] == pytest.approx(levels[0] / n, abs=1e-9)
    assert res["first_excited_energy"] == pytest.approx(levels[1], abs=1e-8)
    assert res["gap"] == pytest.approx(levels[1] - levels[0], abs=1e-8)
    assert res["wall_time"] > 0


def test_exact_refuses_large_system(tmp_path):
    path = _write(tmp_path, TFIM6.replace("[6]", "[40]"))
    result = _invoke("exact", path)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: hilbert: dimension")
    assert "GiB" in result.stderr and len(result.stderr.splitlines()) == 1


def test_exact_text_output_and_set(tmp_path):
    path = _write(tmp_path, TFIM6)
    result = _invoke("exact", path, "--set", "hamiltonian.h=0", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["energy"] == pytest.approx(-6.0)  # classical
    text = _invoke("exact", path)
    assert text.exit_code == 0 and "E0/N" in text.stdout


def test_check_prints_resolved_config(tmp_path):
    import tomllib

    from nqs import config

    path = _write(tmp_path, TFIM6, name="tfim6.toml")
    result = _invoke("check", path, "--set", "model.alpha=2")
    assert result.exit_code == 0, result.output
    printed = tomllib.loads(result.stdout)  # comments included, still valid TOML
    assert printed["model"] == {
        "kind": "rbm",
        "param_dtype": "float64",
        "dtype": "float64",
        "symmetrize": False,
        "alpha": 2,
    }
    assert config.loads(result.stdout) == config.load(path, overrides=["model.alpha=2"])
    # RBM with alpha = 2 on 6 sites: 6*12 weights + 12 hidden + 6 visible biases
    assert "# parameters (real): 90" in result.stdout
    assert "# Hilbert-space dimension: 64" in result.stdout
    assert "# memory per step" in result.stdout
    assert "# devices: 1 of 1 cpu device on 1 process" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tfim6.toml"]


def test_check_compile_prints_the_compiled_memory(tmp_path):
    path = _write(tmp_path, TFIM6, name="tfim6.toml")
    result = _invoke("check", path, "--compile")
    assert result.exit_code == 0, result.output
    assert "# memory per step (compiled): " in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tfim6.toml"]


# --------------------------------------------------------------- end to end
TINY = """
name = "tiny"
seed = 5
[lattice]
kind = "chain"
extent = [6]
[hamiltonian]
kind = "ising"
J = 1.0
h = 0.7
[sampler]
n_chains = 16
n_samples = 256
[driver]
n_steps = 30
[optimizer]
kind = "sgd"
learning_rate = 0.05
[preconditioner]
diag_shift = 0.01
"""


def _analyse(run_dir):
    result = _invoke("analyse", run_dir, "--json", "--last", "0.25")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _assert_png(path):
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[0] >= 300 and image.shape[1] >= 400


def test_run_analyse_plot(tmp_path):
    config = _write(tmp_path, TINY)
    run_dir = tmp_path / "run"
    result = _invoke("run", config, "-o", run_dir)
    assert result.exit_code == 0, result.output
    assert "tiny: completed at step 30" in result.stdout
    assert "exact energy" in result.stderr  # printed before starting

    exact = np.linalg.eigvalsh(_dense_tfim(6, 1.0, 0.7))[0]
    summary = _analyse(run_dir)
    assert (summary["n_steps"], summary["window"], summary["n_sites"]) == (30, 8, 6)
    assert summary["exact_energy"] == pytest.approx(exact, abs=1e-9)
    # an easy case: converged to well below a percent, within a few error bars
    assert summary["relative_error"] < 5e-3
    assert abs(summary["energy"] - exact) < 5 * summary["energy_error"] + 2e-3
    assert summary["variance"] < 0.1 and not summary["collapsed"]

    plot = _invoke("plot", run_dir, "-o", tmp_path / "energy.png")
    assert plot.exit_code == 0, plot.output
    _assert_png(tmp_path / "energy.png")

    # existing run directory: refused, nothing touched
    before = (run_dir / "log.h5").read_bytes()
    again = _invoke("run", config, "-o", run_dir)
    assert again.exit_code == 2
    assert again.stderr.startswith(f"error: {run_dir}: run directory exists")
    assert (run_dir / "log.h5").read_bytes() == before

    # resuming with a different physical setting is refused before anything runs
    bad = _invoke("run", config, "-o", run_dir, "--resume", "--set", "hamiltonian.h=1")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: hamiltonian.h:")
    assert (run_dir / "log.h5").read_bytes() == before


@pytest.mark.slow
def test_resume_appends(tmp_path):
    from nqs import analysis

    config = _write(tmp_path, TINY)
    run_dir = tmp_path / "run"
    first = _invoke("run", config, "-o", run_dir, "-q", "--set", "driver.n_steps=12")
    assert first.exit_code == 0, first.output
    more = _invoke(
        "run", config, "-o", run_dir, "--resume", "--set", "driver.n_steps=20"
    )
    assert more.exit_code == 0, more.output
    assert "resuming at step 12" in more.stderr
    run = analysis.load_run(run_dir)
    np.testing.assert_array_equal(run.history["step"], np.arange(20))
    assert np.all(np.diff(run.history["wall_time"]) > 0)
    assert _analyse(run_dir)["n_steps"] == 20


@pytest.mark.slow
def test_force_overwrites(tmp_path):
    config = _write(tmp_path, TINY)
    run_dir = tmp_path / "run"
    first = _invoke("run", config, "-o", run_dir, "-q", "--set", "driver.n_steps=4")
    assert first.exit_code == 0, first.output
    fresh = _invoke(
        "run", config, "-o", run_dir, "--force", "--set", "driver.n_steps=2"
    )
    assert fresh.exit_code == 0, fresh.output
    assert _analyse(run_dir)["n_steps"] == 2
    other = tmp_path / "not_a_run"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    refused = _invoke("run", config, "-o", other, "--force")
    assert refused.exit_code == 2 and "not an nqs run directory" in refused.stderr
    assert (other / "thesis.tex").read_text() == "precious"


def test_run_bad_input_writes_nothing(tmp_path):
    run_dir = tmp_path / "out"
    config = _write(tmp_path, TINY)
    for args in (
        ["--set", "sampler.n_samples=100"],
        ["--set", "model.alpha=-1"],
        ["--set", 'model.kind="nope"'],
        ["--set", "optimizer.kind=not_an_optimizer"],
    ):
        result = _invoke("run", config, "-o", run_dir, *args)
        assert result.exit_code == 2, (args, result.output)
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith(
            ("error: sampler", "error: model", "error: opt")
        )
        assert not run_dir.exists()
    result = _invoke("run", config, "-o", run_dir, "--resume")
    assert result.exit_code == 2 and "nothing to resume" in result.stderr
    assert not run_dir.exists()


def test_tdvp_without_initial_state_is_refused(tmp_path):
    text = TINY.replace("n_steps = 30", 'kind = "tdvp"\nt_end = 1.0\ndt = 0.01')
    run_dir = tmp_path / "out"
    result = _invoke("run", _write(tmp_path, text), "-o", run_dir)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: driver.initial_state"), result.stderr
    assert not run_dir.exists()


def test_debug_shows_traceback(tmp_path):
    from nqs.errors import InputError

    config = _write(tmp_path, TINY + "[extra]\nx = 1\n")
    plain = _invoke("check", config)
    assert plain.exit_code == 2 and plain.exception.__class__ is SystemExit
    debug = _invoke("--debug", "check", config)
    assert isinstance(debug.exception, InputError) and debug.exception.key == "extra"


def test_analyse_refuses_non_log(tmp_path):
    path = _write(tmp_path, "not hdf5", name="log.h5")
    result = _invoke("analyse", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}: not a readable HDF5 log")


@pytest.mark.slow
def test_bench_json(tmp_path):
    config = _write(tmp_path, TINY)
    result = _invoke("bench", config, "--steps", "3", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["machine"]["versions"]["jax"] and data["machine"]["devices"]
    (res,) = data["results"]
    assert (res["name"], res["n_sites"], res["n_samples"], res["steps"]) == (
        "tiny",
        6,
        256,
        3,
    )
    assert res["compile_time"] > res["time_per_step"] > 0
    assert res["samples_per_second"] == pytest.approx(256 / res["time_per_step"])


@pytest.mark.slow
def _toml(path: Path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text())


GROUND_STATE_CONFIGS = [p for p in CONFIGS if _toml(p)["driver"]["kind"] == "vmc"]
DYNAMICS_CONFIGS = [p for p in CONFIGS if _toml(p)["driver"]["kind"] == "tdvp"]
SMALL_SAMPLER = ["--set", "sampler.n_chains=16", "--set", "sampler.n_samples=64"]


def _small_run(path: Path, run_dir: Path, *extra):
    result = _invoke(
        "run",
        path,
        "-o",
        run_dir,
        "-q",
        "--set",
        "driver.n_steps=3",
        "--set",
        "driver.exact=false",
        *SMALL_SAMPLER,
        *extra,
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "path", GROUND_STATE_CONFIGS, ids=[p.stem for p in GROUND_STATE_CONFIGS]
)
def test_shipped_config_runs(tmp_path, monkeypatch, path):
    """Every shipped config runs as shipped, shrunk to a few steps and samples."""
    monkeypatch.chdir(ROOT)  # custom ansatz paths are relative to the repository
    run_dir = tmp_path / path.stem
    _small_run(path, run_dir)
    assert _analyse(run_dir)["n_steps"] == 3


@pytest.fixture(scope="module")
def initial_runs(tmp_path_factory):
    """Shrunk runs of the ground-state configs that dynamics configs start from,
    made once per module: name of the initial run -> its run directory."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            (ground,) = [
                p for p in GROUND_STATE_CONFIGS if _toml(p).get("name") == name
            ]
            made[name] = tmp_path_factory.mktemp("initial") / name
            _small_run(ground, made[name])
        return made[name]

    return get


@pytest.mark.parametrize(
    "path", DYNAMICS_CONFIGS, ids=[p.stem for p in DYNAMICS_CONFIGS]
)
def test_shipped_dynamics_config_runs(tmp_path, monkeypatch, path, initial_runs):
    """A shipped tdvp config runs from the shipped ground-state config that makes its
    initial state (the config whose name is the initial run's directory name), both
    shrunk: two time steps."""
    monkeypatch.chdir(ROOT)
    data = _toml(path)
    initial = initial_runs(Path(data["driver"]["initial_state"]).name)
    d = data["driver"]
    extra = [] if data["sampler"].get("kind") == "full_sum" else SMALL_SAMPLER
    result = _invoke(
        "run",
        path,
        "-o",
        tmp_path / path.stem,
        "-q",
        "--set",
        f'driver.initial_state="{initial}"',
        "--set",
        f"driver.t_end={2 * d['dt']}",
        "--set",
        f"driver.save_every_t={d['dt']}",
        "--set",
        "driver.exact=false",
        *extra,
    )
    assert result.exit_code == 0, result.output
    summary = _analyse(tmp_path / path.stem)
    assert summary["dynamics"]["n_saved"] == 3
