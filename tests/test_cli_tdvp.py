"""`nqs run` of a tdvp config as a user runs it: from an earlier run's final state,
logged as documented (history/t, diagnostics, exact curves), analysed, plotted,
resumed to the same history after an interruption, and bad input refused."""

import json
from pathlib import Path

import numpy as np
import pytest
from nqs_cli.app import app
from typer.testing import CliRunner

from nqs import log as logmod
from nqs import prepare
from nqs.config import load

GROUND = """
name = "ground"
seed = 3
[lattice]
kind = "chain"
extent = [6]
[hamiltonian]
kind = "ising"
h = 2.0
[model]
kind = "rbm"
alpha = 1
param_dtype = "complex128"
[sampler]
n_chains = 8
n_samples = 256
[driver]
n_steps = 30
exact = false
[optimizer]
kind = "sgd"
learning_rate = 0.05
"""

QUENCH = """
name = "quench"
seed = 5
[lattice]
kind = "chain"
extent = [6]
[hamiltonian]
kind = "ising"
h = 1.0
[model]
kind = "rbm"
alpha = 1
param_dtype = "complex128"
[sampler]
n_chains = 8
n_samples = 256
[driver]
kind = "tdvp"
t_end = 0.12
dt = 0.02
integrator = "heun"
save_every_t = 0.04
initial_state = "{initial}"
checkpoint_every = 2
flush_every = 1
[preconditioner]
kind = "sr"
diag_shift = 1e-3
[observables]
mx = {{ kind = "magnetization", axis = "x" }}
"""


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _refused(result, prefix: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {prefix}"), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def ground_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tdvp")
    config = tmp / "ground.toml"
    config.write_text(GROUND)
    result = _invoke("run", config, "-o", tmp / "ground", "-q")
    assert result.exit_code == 0, result.output
    return tmp, tmp / "ground"


def _quench(tmp: Path, ground: Path, text: str = QUENCH, name="quench.toml") -> Path:
    config = tmp / name
    config.write_text(text.format(initial=ground))
    return config


@pytest.fixture(scope="module")
def quench_run(ground_run):
    tmp, ground = ground_run
    config = _quench(tmp, ground)
    result = _invoke("run", config, "-o", tmp / "quench", "-q")
    assert result.exit_code == 0, result.output
    assert "completed at t = 0.12" in result.output
    return config, tmp / "quench"


def test_log_layout(quench_run):
    _, run_dir = quench_run
    data = logmod.read_log(run_dir / "log.h5")
    attrs, h, ex = data["attrs"], data["history"], data["exact"]
    assert attrs["driver"] == "tdvp" and attrs["format_version"] == 2
    np.testing.assert_allclose(h["t"], [0.0, 0.04, 0.08, 0.12], atol=1e-12)
    np.testing.assert_array_equal(h["step"], np.arange(4))
    np.testing.assert_array_equal(h["n_steps"], [0, 2, 4, 6])
    assert np.isnan(h["dt"][0]) and np.allclose(h["dt"][1:], 0.02)
    assert np.all((h["residual"][1:] >= 0) & (h["residual"][1:] < 1))
    for key in ("energy/mean", "energy/error", "mx/mean", "mx/error", "acceptance"):
        assert np.all(np.isfinite(h[key])), key
    np.testing.assert_allclose(ex["t"], h["t"])
    assert ex["mx"].shape == (4,) and ex["energy_t"].shape == (4,)
    # the exact curve starts from the loaded state: <X>(0) agrees within the noise
    assert abs(h["mx/mean"][0] - ex["mx"][0]) < 5 * h["mx/error"][0] + 1e-3
    # the exact energy is conserved along the exact evolution
    np.testing.assert_allclose(ex["energy_t"], ex["energy_t"][0], rtol=1e-9)


def test_analyse_and_plot(quench_run):
    _, run_dir = quench_run
    result = _invoke("analyse", run_dir, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    summary = summary[0] if isinstance(summary, list) else summary
    d = summary["dynamics"]
    assert d["time"] == "real" and d["t_reached"] == pytest.approx(0.12)
    assert d["n_saved"] == 4 and d["n_steps"] == 6 and d["n_rejected"] == 0
    assert set(d["max_error"]) == {"energy", "mx"}
    assert 0 <= d["max_error"]["mx"] < 0.1
    assert summary["relative_error"] is None  # no ground-state reference in real time
    text = _invoke("analyse", run_dir).output
    assert "dynamics" in text and "max |mx - exact|" in text
    out = run_dir / "mx.png"
    result = _invoke("plot", run_dir)
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.stat().st_size > 1000


def test_exact_on_a_tdvp_config(quench_run):
    config, run_dir = quench_run
    result = _invoke("exact", config, "--json")
    assert result.exit_code == 0, result.output
    res = json.loads(result.output)
    ex = logmod.read_log(run_dir / "log.h5")["exact"]
    np.testing.assert_allclose(res["series"]["mx"], ex["mx"], rtol=1e-10)
    assert res["dimension"] == 64


def test_interrupted_evolution_resumes_to_the_same_history(ground_run, quench_run):
    """Stopped after row 3 (last checkpoint at row 2), resumed: identical rows."""
    tmp, ground = ground_run
    _, full_dir = quench_run
    prep = prepare.prepare(load(_quench(tmp, ground)))
    run_dir = tmp / "interrupted"

    def stop_after_row_3(record):
        if record.get("event") == "step" and record["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare.execute(prep, run_dir, progress=stop_after_row_3)
    assert len(logmod.read_log(run_dir / "log.h5")["history"]["t"]) == 3
    prepare.execute(prep, run_dir, resume=True)
    a = logmod.read_log(run_dir / "log.h5")["history"]
    b = logmod.read_log(full_dir / "log.h5")["history"]
    assert set(a) == set(b)
    for key in a:
        if key != "wall_time":
            np.testing.assert_allclose(a[key], b[key], rtol=1e-12, err_msg=key)


def test_bad_input(ground_run, tmp_path):
    tmp, ground = ground_run
    good = QUENCH.format(initial=ground)

    def refused(text, prefix, *extra):
        config = tmp_path / "bad.toml"
        config.write_text(text)
        return _refused(_invoke("run", config, "-o", tmp_path / "out", *extra), prefix)

    refused(good.replace(f'initial_state = "{ground}"\n', ""), "driver.initial_state")
    refused(good.replace(str(ground), str(tmp_path / "none")), "driver.initial_state")
    refused(good.replace("alpha = 1", "alpha = 2"), "driver.initial_state")
    refused(good.replace("dt = 0.02", "dt = 0.0"), "driver.dt")
    refused(good.replace("dt = 0.02", "dt = -0.01"), "driver.dt")
    refused(good.replace("dt = 0.02", "dt = 0.5"), "driver.dt")
    refused(good.replace('"heun"', '"rk5"'), "driver.integrator")
    refused(good.replace('"heun"', '"rk45"\nrtol = 2.0'), "driver.rtol")
    refused(good.replace("save_every_t = 0.04", "save_every_t = 0.03"), "driver.save_")
    refused(good.replace('"complex128"', '"float64"'), "driver.initial_state")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    line = refused(good.replace(str(ground), str(unfinished)), "driver.initial_state")
    assert "final state" in line
    assert not (tmp_path / "out").exists()


def test_real_time_needs_a_complex_ansatz(ground_run):
    import jax
    import jax.numpy as jnp

    from nqs import build, build_dynamics
    from nqs.errors import InputError

    tmp, ground = ground_run
    text = QUENCH.format(initial=ground).replace('"complex128"', '"float64"')
    cfg = load(_write(tmp, text, "real.toml"))
    objs = build.objects(cfg)
    params = objs.model.init(jax.random.key(0), jnp.zeros((1, 6), jnp.int8))
    with pytest.raises(InputError) as err:
        build_dynamics.tdvp_problem(cfg, objs, params)
    assert err.value.key == "model.param_dtype"
    imaginary = text.replace('kind = "tdvp"', 'kind = "tdvp"\ntime = "imaginary"')
    cfg = load(_write(tmp, imaginary, "imag.toml"))
    assert build_dynamics.tdvp_problem(cfg, objs, params).time == "imaginary"


def _write(directory: Path, text: str, name: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path
