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
    assert printed["model"] == {"kind": "rbm", "param_dtype": "float64", "alpha": 2}
    assert config.loads(result.stdout) == config.load(path, overrides=["model.alpha=2"])
    # RBM with alpha = 2 on 6 sites: 6*12 weights + 12 hidden + 6 visible biases
    assert "# parameters (real): 90" in result.stdout
    assert "# Hilbert-space dimension: 64" in result.stdout
    assert "# memory per step" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tfim6.toml"]
