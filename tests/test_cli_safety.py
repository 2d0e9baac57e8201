"""Everything is checked before anything is written or deleted: resume and --force
never lose a run, sizes are refused from a cheap estimate, free sections (optimizer,
schedules, model, observables) and custom models are tried once at check time, and
bad files are named. Every refusal is exit 2 with one line and writes nothing."""

import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from nqs_cli.app import app
from typer.testing import CliRunner

TINY = """
name = "tiny"
seed = 3
[lattice]
kind = "chain"
extent = [6]
[hamiltonian]
kind = "ising"
[sampler]
n_chains = 4
n_samples = 16
[driver]
n_steps = 2
exact = false
[optimizer]
kind = "sgd"
learning_rate = 0.05
"""


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _write(directory: Path, text: str, name: str = "c.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def _refused(result, prefix: str) -> str:
    """Exit 2 with exactly one line starting with ``error: <prefix>``."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {prefix}"), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 2-step run: (config path, run directory)."""
    tmp = tmp_path_factory.mktemp("run")
    config = _write(tmp, TINY)
    run_dir = tmp / "run"
    result = _invoke("run", config, "-o", run_dir, "-q")
    assert result.exit_code == 0, result.output
    return config, run_dir


def _copy_run(run_dir: Path, dest: Path) -> Path:
    dest.mkdir()
    for f in run_dir.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# ------------------------------------------------------------------ data loss


def test_resume_without_checkpoint_is_refused(finished_run, tmp_path):
    config, good = finished_run
    run_dir = _copy_run(good, tmp_path / "run")
    (run_dir / "checkpoint.npz").unlink()
    before = _snapshot(run_dir)
    line = _refused(_invoke("run", config, "-o", run_dir, "--resume"), "")
    assert str(run_dir / "checkpoint.npz") in line
    assert _snapshot(run_dir) == before  # log.h5 and final_state.npz untouched


@pytest.mark.parametrize(
    "content",
    [b"garbage, not a zip archive", b"PK\x03\x04" + b"\x00" * 40, b""],
    ids=["garbage", "truncated-zip", "empty"],
)
def test_resume_from_corrupt_checkpoint_is_refused(finished_run, tmp_path, content):
    config, good = finished_run
    run_dir = _copy_run(good, tmp_path / "run")
    (run_dir / "checkpoint.npz").write_bytes(content)
    before = _snapshot(run_dir)
    line = _refused(
        _invoke("run", config, "-o", run_dir, "--resume", "--set", "driver.n_steps=4"),
        str(run_dir / "checkpoint.npz"),
    )
    assert "corrupt" in line
    assert _snapshot(run_dir) == before


def test_force_with_a_bad_value_keeps_the_old_run(finished_run, tmp_path):
    config, good = finished_run
    run_dir = _copy_run(good, tmp_path / "run")
    before = _snapshot(run_dir)
    for bad in ('optimizer.momentum="fast"', 'model.alpha="2"'):
        result = _invoke("run", config, "-o", run_dir, "--force", "--set", bad)
        _refused(result, bad.split("=")[0])
        assert _snapshot(run_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_replacing_restores_the_old_run_when_the_new_one_fails(tmp_path):
    from nqs_cli.app import _replacing

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "log.h5").write_bytes(b"old run")
    with pytest.raises(RuntimeError), _replacing(run_dir, True) as on_progress:
        run_dir.mkdir()
        (run_dir / "log.h5").write_bytes(b"new run, failed before a step")
        on_progress({"event": "start"})
        raise RuntimeError("first step failed")
    assert (run_dir / "log.h5").read_bytes() == b"old run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    # once the new run has taken a step, the old one is gone for good
    with _replacing(run_dir, True) as on_progress:
        run_dir.mkdir()
        (run_dir / "log.h5").write_bytes(b"new run")
        on_progress({"event": "step"})
    assert (run_dir / "log.h5").read_bytes() == b"new run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# ------------------------------------------------------------------ sizes

BIG = [
    ("lattice.extent=[100000]", "lattice.extent", "100,000 sites"),
    ('lattice.kind="square"\nlattice.extent=[1000, 1000]', "lattice.extent", "sites"),
    ("lattice.extent=[40]\nsampler.kind='exact'", "sampler.kind", "states"),
    ("lattice.extent=[40]\nsampler={kind='full_sum'}", "sampler.kind", "basis states"),
    ("sampler.n_discard_per_chain=1000000000000", "sampler", "proposals"),
    (
        "lattice.extent=[3000]\nmodel.alpha=4\nsampler.n_samples=4096\n"
        # per-sample gradients: 4096 x 36M x 16 bytes (all samples in one chunk; the
        # automatic chunk would make it fit, one sample at a time)
        'preconditioner.kind="none"\ndriver.chunk_size=4096',
        "sampler.n_samples",
        "GiB",
    ),
]


@pytest.mark.parametrize("command", ["check", "run", "exact"])
@pytest.mark.parametrize(
    "sets, key, estimate",
    BIG,
    ids=["chain", "square", "exact", "full-sum", "sweeps", "memory"],
)
def test_too_big_is_refused_fast(tmp_path, command, sets, key, estimate):
    if command == "exact" and key in ("sampler", "sampler.n_samples"):
        pytest.skip("exact diagonalisation does not sample")
    args = [a for s in sets.split("\n") for a in ("--set", s)]
    config = _write(tmp_path, TINY)
    out = ["-o", tmp_path / "out"] if command == "run" else []
    start = time.perf_counter()
    result = _invoke(command, config, *out, *args)
    elapsed = time.perf_counter() - start
    if command == "exact" and key == "sampler.kind":
        line = _refused(result, "hilbert")  # 2^40 states: too many to diagonalise
    else:
        line = _refused(result, key)
        assert estimate in line
    assert elapsed < 10  # ~2 s on a quiet machine; the unguarded build took minutes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_full_sum_limit_is_the_enumeration_limit(tmp_path):
    """2^20 basis states are summed (check prints the count), 2^21 are refused."""
    config = _write(tmp_path, TINY)
    full_sum = ["--set", "sampler={kind='full_sum'}", "--set", "driver.chunk_size=4096"]
    result = _invoke("check", config, *full_sum, "--set", "lattice.extent=[20]")
    assert result.exit_code == 0, result.output
    assert "# full sum over 1048576 basis states" in result.stdout
    out = tmp_path / "out"
    result = _invoke(
        "run", config, "-o", out, *full_sum, "--set", "lattice.extent=[21]"
    )
    line = _refused(result, "sampler.kind")
    assert "2.097e+06 basis states" in line and "1,048,576" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


# ------------------------------------------------------------------ open sections

SCHEDULE = '{kind="linear", init_value=%s, end_value=0.0, transition_steps=10}'
OPEN = [
    ("optimizer.momentum=nan", "optimizer.momentum"),
    ('optimizer.momentum="x"', "optimizer.momentum"),
    ('optimizer.kind="adam"\noptimizer.b1="x"', "optimizer.b1"),
    ('optimizer.kind="adam"\noptimizer.b1=nan', "optimizer.b1"),
    ("optimizer.nesterov=1", "optimizer.nesterov"),
    (
        "optimizer.learning_rate=" + SCHEDULE % '"a"',
        "optimizer.learning_rate.init_value",
    ),
    (
        "optimizer.learning_rate=" + SCHEDULE % "inf",
        "optimizer.learning_rate.init_value",
    ),
    (
        'optimizer.learning_rate={kind="exponential", init_value=1.0, '
        "transition_steps=1, decay_rate=1e300}",
        "optimizer.learning_rate",
    ),
    (
        "preconditioner.diag_shift=" + SCHEDULE % "nan",
        "preconditioner.diag_shift.init_value",
    ),
    ('model.alpha="2"', "model.alpha"),
    ("model.alpha=nan", "model.alpha"),
    ("model.use_hidden_bias=3", "model.use_hidden_bias"),
    ('observables.sf={kind="structure_factor", q=[nan]}', "observables.sf.q"),
    ('observables.sf={kind="structure_factor", q=["a"]}', "observables.sf.q"),
    ('observables.m={kind="magnetization", axis=1}', "observables.m.axis"),
    (
        'observables.c={kind="custom", terms=[{sites=[0], matrix=[[nan, 0], [0, 1]]}]}',
        "observables.c.terms[0].matrix",
    ),
]


@pytest.mark.parametrize("sets, key", OPEN, ids=[k for _, k in OPEN])
def test_open_sections_are_checked(tmp_path, sets, key):
    args = [a for s in sets.split("\n") for a in ("--set", s)]
    config = _write(tmp_path, TINY)
    _refused(_invoke("check", config, *args), key + ":")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_open_section_errors_come_before_the_run_directory(tmp_path):
    config = _write(tmp_path, TINY)
    for sets, key in OPEN[:3] + OPEN[9:10] + OPEN[12:13]:
        args = [a for s in sets.split("\n") for a in ("--set", s)]
        _refused(_invoke("run", config, "-o", tmp_path / "out", *args), key + ":")
        assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ custom models

CUSTOM = """
import sys
import flax.linen as nn
import jax.numpy as jnp

class Model(nn.Module):
    @nn.compact
    def __call__(self, sigma):
        w = self.param("w", nn.initializers.normal(0.01), (sigma.shape[-1],))
        out = sigma @ w
        return {body}
"""


@pytest.mark.parametrize(
    "body, words",
    [
        ("out[:, None]", "shape"),
        ("jnp.ones(sigma.shape[0], jnp.int32)", "dtype"),
        ("out * jnp.nan", "not finite"),
        ("out.sum()", "shape"),
        ("sys.exit(0)", "SystemExit"),
    ],
    ids=["column", "int", "nan", "scalar", "exit-in-call"],
)
def test_bad_custom_model_is_refused_at_check(tmp_path, body, words):
    module = tmp_path / "ansatz.py"
    module.write_text(CUSTOM.format(body=body))
    spec = f"{module}:Model"
    config = _write(tmp_path, TINY + f'[model]\nkind = "{spec}"\n')
    line = _refused(_invoke("check", config), "model")
    assert spec in line and words in line


def test_custom_model_exiting_at_import_is_refused(tmp_path):
    module = tmp_path / "ansatz.py"
    module.write_text("import sys\nsys.exit(0)\n")
    config = _write(tmp_path, TINY + f'[model]\nkind = "{module}:Model"\n')
    for args in (["check"], ["run", "-o", tmp_path / "out"]):
        line = _refused(_invoke(*args, config), "model")
        assert str(module) in line and "SystemExit" in line
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ paths


@pytest.mark.parametrize(
    "make",
    [
        lambda f: f.create_dataset("x", data=np.arange(3)),
        lambda f: (
            f.attrs.__setitem__("format", "nqs-log"),
            f.create_dataset("history/energy/mean", data=np.array([b"a", b"b"])),
        ),
        lambda f: (
            f.attrs.__setitem__("format", "nqs-log"),
            f.attrs.__setitem__("config", 3),
            f.create_dataset("history/energy/mean", data=np.ones(2)),
        ),
    ],
    ids=["other-hdf5", "text-history", "number-config"],
)
def test_analyse_names_a_file_that_is_not_an_nqs_log(tmp_path, make):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        make(f)
    for command in ("analyse", "plot"):
        line = _refused(_invoke(command, path), str(path))
        assert "not an nqs log" in line


def test_plot_onto_a_directory_is_refused(finished_run, tmp_path):
    _, run_dir = finished_run
    for target in (tmp_path, tmp_path / "figure.png"):
        target.mkdir(exist_ok=True)
        line = _refused(_invoke("plot", run_dir, "-o", target), str(target))
        assert "directory" in line
