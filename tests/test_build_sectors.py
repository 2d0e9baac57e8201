"""Sectors from the config: ``nqs exact --sectors`` and ``[symmetry]`` against the
full-space diagonalisation, level counts, and bad sectors refused with the key."""

import json

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
