"""The JSON Schema of the config: shipped file up to date, shipped configs valid
against it (checked by an independent validator), and old logs still readable."""

import json
import shutil
from pathlib import Path

import h5py
import jsonschema
import pytest
import tomllib
from nqs_cli.app import app
from typer.testing import CliRunner

from nqs import config
from nqs.config import schema
from nqs.errors import InputError

ROOT = Path(__file__).parent.parent
SCHEMA_FILE = ROOT / "docs" / "nqs-config.schema.json"
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))
FIXTURE = Path(__file__).parent / "fixtures" / "log_v1"


@pytest.fixture(scope="module")
def validator():
    data = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(data)
    return jsonschema.Draft202012Validator(data)


def test_shipped_schema_is_current():
    assert SCHEMA_FILE.read_text() == schema.schema_text(), (
        "docs/nqs-config.schema.json is stale: regenerate with "
        "`nqs schema > docs/nqs-config.schema.json`"
    )


def test_schema_command_prints_it():
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json.loads(SCHEMA_FILE.read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_validates(path, validator):
    first = path.read_text().splitlines()[0]
    assert first == "#:schema ../docs/nqs-config.schema.json"
    assert (path.parent / first.split()[1]).resolve() == SCHEMA_FILE.resolve()
    validator.validate(tomllib.loads(path.read_text()))
    resolved = tomllib.loads(config.resolved_toml(config.load(path)))
    validator.validate(resolved)


def _base():
    return {
        "lattice": {"kind": "chain", "extent": [6]},
        "hamiltonian": {"kind": "ising", "h": 0.5},
    }


@pytest.mark.parametrize(
    "section, change",
    [
        ("lattice", {"extent": "4"}),
        ("lattice", {"kind": "cubic"}),
        ("hamiltonian", {"delta": 2.0}),
        ("sampler", {"n_sample": 10}),
        ("sampler", {"n_chains": 2.5}),
        ("driver", {"n_steps": 0}),
        ("preconditioner", {"solver": "lu"}),
        ("lattise", {"kind": "chain"}),
    ],
    ids=[
        "extent-string",
        "unknown-lattice",
        "key-of-other-kind",
        "unknown-key",
        "float-for-int",
        "zero-steps",
        "unknown-solver",
        "unknown-section",
    ],
)
def test_schema_refuses_what_the_loader_refuses(validator, section, change):
    data = _base()
    data.setdefault(section, {}).update(change)
    assert not validator.is_valid(data)
    with pytest.raises(InputError):
        config.from_dict(data)


def test_schema_describes_every_key():
    """Each declared key of each section model carries a description."""
    data = schema.json_schema()
    for name, model in data["$defs"].items():
        for key, prop in model.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{key} has no description"


def test_log_written_before_the_schema_still_loads(tmp_path):
    """A run directory of the previous config code: analyse reads it, the stored
    config reloads, and --resume continues it."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    with h5py.File(run / "log.h5") as f:
        stored = f.attrs["config"]
    cfg = config.loads(stored)
    assert cfg.name == "tiny-v1"
    assert cfg.optimizer.learning_rate["kind"] == "exponential"
    runner = CliRunner()
    result = runner.invoke(app, ["analyse", str(run), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_steps"] == 6
    result = runner.invoke(
        app,
        [
            "run",
            str(run / "config.toml"),
            "-o",
            str(run),
            "--resume",
            "--set",
            "driver.n_steps=9",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    with h5py.File(run / "log.h5") as f:
        assert list(f["history/step"][:]) == list(range(9))
