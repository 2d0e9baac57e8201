"""Sectors from the config: ``nqs exact --sectors`` and ``[symmetry]`` against the
full-space diagonalisation, level counts, and bad sectors refused with the key."""

import json
import types

import numpy as np
import pytest
from nqs_cli.app import app
from typer.testing import CliRunner

from nqs import build, build_sectors, config, exact_sector, symmetry
from nqs.errors import InputError

CHAIN = """
[lattice]
kind = "chain"
extent = [{L}]
[hilbert]
total_sz = 0
[hamiltonian]
kind = "{ham}"
"""


def _write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _json(args):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("L", [8, 10])
def test_sectors_cover_the_full_space(tmp_path, L):
    """Levels x irrep dimension x star size add up to the full dimension, and the
    lowest sector energy is the full-space ground energy; L = 4n+2 has it at k = pi."""
    path = _write(tmp_path, CHAIN.format(L=L, ham="heisenberg"))
    res = _json(["exact", path, "--sectors", "--json"])
    full = _json(["exact", path, "--json"])
    total = sum(
        r["dimension"] * r["irrep_dimension"] * len(r["star"]) for r in res["sectors"]
    )
    assert total == full["dimension"] == res["dimension"]
    assert res["energy"] == pytest.approx(full["energy"], abs=1e-9)
    best = min(res["sectors"], key=lambda r: r["energy"])
    assert best["momentum"] == ([L // 2] if L % 4 == 2 else [0])
    assert res["group"] == "space" and res["group_order"] == 2 * L * 2


def test_config_sector_matches_the_table(tmp_path):
    path = _write(tmp_path, CHAIN.format(L=10, ham="heisenberg"))
    table = _json(["exact", path, "--sectors", "--json"])["sectors"]
    row = next(r for r in table if r["momentum"] == [2] and r["spin_flip"] == -1)
    res = _json(
        [
            "exact",
            path,
            "--json",
            "--set",
            "symmetry.momentum=[2]",
            "--set",
            "symmetry.spin_flip=-1",
        ]
    )
    assert res["energy"] == pytest.approx(row["energy"], abs=1e-9)
    assert res["dimension"] == row["dimension"]
    assert res["sector"] == {
        "group": "space",
        "momentum": [2],
        "irrep": "A",
        "spin_flip": -1,
    }


def test_levels_count_every_irrep_on_the_square():
    """Fixed-point counting gives each sector's level count: equal to the explicit
    basis for one-dimensional irreps, and Σ d·levels·|star| = C(16, 8) with the
    two-dimensional irreps of C4v included."""
    cfg = config.loads(
        CHAIN.replace('"chain"', '"square"').format(L="4, 4", ham="j1j2") + "J2 = 0.5\n"
    )
    lat = build.lattice(cfg)
    hil = build.hilbert(cfg, lat)
    total = 0
    sectors = symmetry.all_sectors(lat, "space", spin_flip=True, one_per_star=True)
    assert any(s.dim == 2 for s in sectors)
    for s in sectors:
        levels = build_sectors.n_levels(s, 16, 8)
        total += levels * s.dim * len(s.star)
        if s.dim == 1 and levels < 400:
            assert exact_sector.sector_dimension(hil, s) == levels
    assert total == 12870


@pytest.mark.parametrize(
    "sets, key, fragment",
    [
        (["symmetry.momentum=[12]"], "symmetry.momentum", "not allowed"),
        (["symmetry.momentum=[1, 2]"], "symmetry.momentum", "one per lattice axis"),
        (["symmetry.irrep='E'"], "symmetry.irrep", "valid: A, B"),
        (
            ["symmetry.spin_flip=1", "hilbert.total_sz=1"],
            "symmetry.spin_flip",
            "total_sz = 0",
        ),
        (["symmetry.spin_flip=2"], "symmetry.spin_flip", "1, -1"),
        (["symmetry.group='rotation'"], "symmetry.group", "translation, point"),
    ],
    ids=["momentum", "momentum-axes", "irrep", "flip-sz", "flip-value", "group"],
)
def test_bad_sector_refused(tmp_path, sets, key, fragment):
    path = _write(tmp_path, CHAIN.format(L=10, ham="heisenberg"))
    args = ["exact", path]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}: "), lines
    assert fragment in lines[0]


def test_group_that_breaks_the_hamiltonian_refused():
    """A Hamiltonian that a group element does not commute with is refused."""
    cfg = config.loads(CHAIN.format(L=6, ham="heisenberg") + "[symmetry]\n")
    lat = build.lattice(cfg)
    hil = build.hilbert(cfg, lat)
    from nqs.operator import spin_z

    broken = build.hamiltonian(cfg, hil, lat) + 0.3 * spin_z(hil, 0)
    with pytest.raises(InputError) as err:
        build_sectors.config_sector(cfg, lat, broken)
    assert err.value.key == "symmetry.group"


def test_run_in_a_sector_needs_a_model_that_stays_in_it(tmp_path):
    """A plain RBM would leave the sector: the run is refused naming
    model.symmetrize, nothing written."""
    path = _write(tmp_path, CHAIN.format(L=6, ham="heisenberg") + "[symmetry]\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", path, "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: model.symmetrize:"), result.stderr
    assert not out.exists()


TRIANGULAR = """
[lattice]
kind = "triangular"
extent = [3, 3]
[hilbert]
total_sz = 0.5
[hamiltonian]
kind = "heisenberg"
"""

SQUARE = """
[lattice]
kind = "square"
extent = [4, 4]
[hilbert]
total_sz = 0
[hamiltonian]
kind = "j1j2"
J2 = 0.5
[symmetry]
irrep = "E"
"""


def _dense_in_range(ham, hil, sector):
    """Spectrum of the dense H on the range of P = (d/M) Σ conj χ_m T_m, T_m the
    permutation matrices of the configurations σ -> σ[perms[m]] (no flip)."""
    states = hil.all_states()
    index = {s.tobytes(): i for i, s in enumerate(states)}
    proj = np.zeros((len(states), len(states)), complex)
    for perm, chi in zip(sector.perms, sector.characters, strict=True):
        cols = [index[s.tobytes()] for s in states[:, perm]]
        proj[np.arange(len(states)), cols] += sector.dim * np.conj(chi)
    proj /= len(sector.perms)
    w, v = np.linalg.eigh((proj + proj.conj().T) / 2)
    q = v[:, w > 0.5]
    return np.linalg.eigvalsh(q.conj().T @ ham.to_dense() @ q)


def test_two_dimensional_irreps_have_energies_in_the_table(tmp_path):
    """Triangular 3x3 at S^z = 1/2: the E1, E2 (k = 0) and E (k = K, complex
    characters) rows give the lowest level of the dense Hamiltonian on the range of
    the character projector, each level twice there and once in the table."""
    path = _write(tmp_path, TRIANGULAR)
    res = _json(["exact", path, "--sectors", "--json"])
    full = _json(["exact", path, "--json"])
    cfg = config.loads(TRIANGULAR)
    lat = build.lattice(cfg)
    hil = build.hilbert(cfg, lat)
    ham = build.hamiltonian(cfg, hil, lat)
    rows = [r for r in res["sectors"] if r["irrep_dimension"] == 2]
    assert sorted(r["irrep"] for r in rows) == ["E", "E1", "E2"]
    for r in rows:
        sector = symmetry.sector(lat, "space", r["momentum"], r["irrep"])
        ref = _dense_in_range(ham, hil, sector)
        assert ref.size == 2 * r["dimension"]
        assert r["energy"] == pytest.approx(ref[0], abs=1e-10)
    total = sum(
        r["dimension"] * r["irrep_dimension"] * len(r["star"]) for r in res["sectors"]
    )
    assert total == full["dimension"] == 126
    assert res["energy"] == pytest.approx(full["energy"], abs=1e-10)


def test_config_in_an_e_sector_prints_its_energy(tmp_path):
    """4x4 J1-J2 at k = 0, irrep E of C4v: ``nqs exact`` prints E0 and E1 of the
    sector; without a flip label it is the union of its flip +1 and -1 halves."""
    path = _write(tmp_path, SQUARE)
    result = CliRunner().invoke(app, ["exact", path])
    assert result.exit_code == 0, result.output
    assert "sector k=[0, 0] E, dimension" in result.stdout
    values = dict(
        (key.strip(), float(value))
        for key, value in (line.split("=", 1) for line in result.stdout.splitlines())
        if key.strip() in ("E0", "E1")
    )
    halves = [
        _json(["exact", path, "--json", "--set", f"symmetry.spin_flip={s}"])
        for s in (1, -1)
    ]
    assert [h["irrep_dimension"] for h in halves] == [2, 2]
    union = sorted(
        [h["energy"] for h in halves] + [h["first_excited_energy"] for h in halves]
    )
    assert values["E0"] == pytest.approx(union[0], abs=1e-9)
    assert values["E1"] == pytest.approx(union[1], abs=1e-9)
    whole = _json(["exact", path, "--json"])
    assert whole["dimension"] == sum(h["dimension"] for h in halves)


def test_irrep_sector_too_large_is_refused(monkeypatch):
    """The limit applies to the basis the ED works in; the message names it."""
    cfg = config.loads(TRIANGULAR + '[symmetry]\nmomentum = [1, 2]\nirrep = "E"\n')
    assert build_sectors.exact_in_sector(cfg)["dimension"] == 4
    monkeypatch.setattr(build_sectors, "MAX_SECTOR_DIMENSION", 3)
    with pytest.raises(InputError) as err:
        build_sectors.exact_in_sector(cfg)
    assert err.value.key == "symmetry" and "too large" in str(err.value)


def test_run_exact_energy_in_an_e_sector():
    """A VMC run in an E sector logs the sector's exact energy (None past the
    limit)."""
    cfg = config.loads(TRIANGULAR + '[symmetry]\nirrep = "E2"\n')
    lat = build.lattice(cfg)
    hil = build.hilbert(cfg, lat)
    ham = build.hamiltonian(cfg, hil, lat)
    objs = types.SimpleNamespace(
        sector=build_sectors.config_sector(cfg, lat, ham), hilbert=hil, hamiltonian=ham
    )
    expected = build_sectors.exact_in_sector(cfg)["energy"]
    assert build_sectors.run_exact_energy(cfg, objs, 100) == pytest.approx(expected)
    assert build_sectors.run_exact_energy(cfg, objs, 2) is None
