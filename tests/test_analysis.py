"""Run summaries and plots, on synthetic histories with known statistics."""

import math
from pathlib import Path

import numpy as np
import pytest

from nqs import analysis, plot
from nqs.analysis import RunData

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _ar1(rng, phi, n_replicas, n):
    """AR(1) series x_t = phi x_{t-1} + noise with unit stationary variance."""
    x = np.zeros((n_replicas, n))
    x[:, 0] = rng.normal(size=n_replicas)
    noise = rng.normal(size=(n_replicas, n)) * math.sqrt(1 - phi**2)
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


@pytest.mark.parametrize(
    "phi, n, fraction",
    [(0.0, 400, 0.5), (0.5, 600, 0.5), (0.9, 1000, 0.5)],
    ids=["iid", "ar0.5", "ar0.9"],
)
def test_window_error_matches_spread_of_means(phi, n, fraction):
    """The error bar of the window mean matches the spread over independent replicas
    (the closed form for AR(1) is var(mean) ~ (1 + phi) / (1 - phi) / n_window)."""
    rng = np.random.default_rng(7)
    n_rep = 200
    x = _ar1(rng, phi, n_rep, n)
    results = [analysis.window_average(row, None, fraction) for row in x]
    n_win = results[0][2]
    assert n_win == math.ceil(fraction * n)
    means = np.array([r[0] for r in results])
    errors = np.array([r[1] for r in results])
    np.testing.assert_allclose(means, x[:, -n_win:].mean(axis=1), rtol=1e-12)
    spread = means.std()
    closed_form = math.sqrt((1 + phi) / (1 - phi) / n_win)
    assert spread == pytest.approx(closed_form, rel=0.2)
    assert np.sqrt(np.mean(errors**2)) == pytest.approx(spread, rel=0.15)


def test_window_error_floor_from_step_errors():
    """Constant values carry no spread: the error is that of independent steps."""
    values = np.full(50, -3.0)
    errors = np.full(50, 0.2)
    mean, err, n_win = analysis.window_average(values, errors, 0.5)
    assert (mean, n_win) == (-3.0, 25)
    assert err == pytest.approx(0.2 / math.sqrt(25))


def _synthetic_run(tmp_path, n=100, exact=-10.0, e_final=-9.9, name="toy"):
    step = np.arange(n)
    energy = e_final + 5.0 * np.exp(-step / 10.0)
    cfg = '[lattice]\nkind = "chain"\nextent = [8]\n[hamiltonian]\nkind = "ising"\n'
    return RunData(
        path=tmp_path / name / "log.h5",
        name=name,
        attrs={"config": cfg, "driver": "vmc"},
        history={
            "step": step,
            "wall_time": 2.0 + 0.5 * step,
            "energy/mean": energy,
            "energy/error": np.full(n, 0.01),
            "energy/variance": np.full(n, 0.25),
            "energy/r_hat": np.full(n, 1.01),
            "acceptance": np.linspace(0.2, 0.4, n),
        },
        exact_energy=exact,
    )


def test_summarize_quantities(tmp_path):
    run = _synthetic_run(tmp_path)
    s = analysis.summarize(run, fraction=0.2)
    window = run.history["energy/mean"][-20:]
    assert (s.n_steps, s.last_step, s.window, s.n_sites) == (100, 99, 20, 8)
    assert s.energy == pytest.approx(window.mean())
    assert s.energy_per_site == pytest.approx(window.mean() / 8)
    assert s.v_score == pytest.approx(8 * 0.25 / window.mean() ** 2)
    assert s.relative_error == pytest.approx(abs(window.mean() + 10.0) / 10.0)
    assert s.time_per_step == pytest.approx(0.5)
    assert s.acceptance == pytest.approx(run.history["acceptance"][-20:].mean())
    assert s.r_hat == pytest.approx(1.01)
    assert not s.collapsed
    assert s.settings["hamiltonian.kind"] == "ising"
    text = analysis.format_summary(s)
    assert "V-score" in text and "relative error" in text


def test_collapse_flagged(tmp_path):
    run = _synthetic_run(tmp_path)
    run.history["acceptance"][-30:] = 0.0
    run.history["energy/variance"][-30:] = 0.0
    assert analysis.summarize(run, fraction=0.2).collapsed


def test_bad_fraction(tmp_path):
    with pytest.raises(analysis.InputError) as err:
        analysis.summarize(_synthetic_run(tmp_path), fraction=1.5)
    assert err.value.key == "--last"


def _check_png(path: Path, min_width: int = 400):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[1] >= min_width and image.shape[0] >= 300
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_plot_two_runs_with_exact(tmp_path):
    runs = [
        _synthetic_run(tmp_path, name="a"),
        _synthetic_run(tmp_path, e_final=-9.5, name="b"),
    ]
    out = plot.plot_runs(runs, tmp_path / "energy.png")
    _check_png(out)


def test_plot_quantity(tmp_path):
    run = _synthetic_run(tmp_path)
    _check_png(plot.plot_runs([run], tmp_path / "acc.png", quantity="acceptance"))
    with pytest.raises(analysis.InputError) as err:
        plot.plot_runs([run], tmp_path / "x.png", quantity="magnetization")
    assert err.value.key == "--quantity" and "acceptance" in err.value.message


def test_load_run_reads_log(tmp_path):
    """A log written through nqs.log comes back with its history and exact energy,
    also while rows are still being appended."""
    from nqs import log

    run_dir = tmp_path / "tiny"
    run_dir.mkdir()
    path = run_dir / "log.h5"
    cfg = 'name = "tiny"\n[lattice]\nkind = "chain"\nextent = [4]\n'
    log.create_log(
        path, config_text=cfg + '[hamiltonian]\nkind = "ising"\n', driver="vmc"
    )
    log.write_exact(path, -5.0)
    rows = [
        {
            "step": i,
            "wall_time": 0.1 * i,
            "energy/mean": -4.0 - i / 10,
            "acceptance": 0.5,
        }
        for i in range(6)
    ]
    log.append_rows(path, rows[:3])
    run = analysis.load_run(run_dir)
    assert run.name == "tiny" and run.exact_energy == -5.0
    np.testing.assert_array_equal(run.history["step"], [0, 1, 2])
    log.append_rows(path, rows[3:])
    s = analysis.summarize(analysis.load_run(path), fraction=0.5)
    assert (s.n_steps, s.window, s.n_sites) == (6, 3, 4)
    assert s.energy == pytest.approx(np.mean([-4.3, -4.4, -4.5]))
    assert s.relative_error == pytest.approx(abs(s.energy + 5.0) / 5.0)


def test_load_run_refuses_other_files(tmp_path):
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=[1, 2])
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for path, fragment in [
        (other, "not an nqs log"),
        (text, "not a readable HDF5"),
        (tmp_path / "missing", "no such run"),
    ]:
        with pytest.raises(analysis.InputError) as err:
            analysis.load_run(path)
        assert str(path) in err.value.key and fragment in err.value.message
