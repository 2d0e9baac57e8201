"""Property test: mutated shipped configs never crash `nqs check` or `nqs run`.

Each example takes a config from ``configs/``, applies one to three mutations (type
swaps, deleted and duplicated keys, NaN/inf, huge, zero and negative numbers, unknown
keys and sections) and runs the command in-process. The contract: exit 0 or 2; on 2
exactly one line ``error: ...`` on stderr, no traceback, and nothing written.
"""

import math
import tempfile
from pathlib import Path

import pytest
import tomli_w
import tomllib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nqs_cli.app import app
from typer.testing import CliRunner

ROOT = Path(__file__).parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))

#: Shrinks the shipped runs so that one step compiles and runs in seconds.
SMALL = {
    "sampler": {"n_chains": 2, "n_samples": 8, "n_discard_per_chain": 2},
    "driver": {"n_steps": 1, "exact": False, "checkpoint_every": 1},
}

WEIRD = [
    math.nan,
    math.inf,
    -math.inf,
    0,
    0.0,
    -1,
    -2.5,
    10**18,
    1e300,
    2**63 - 1,
    True,
    "x",
    "",
    [],
    [1, 2],
    ["a"],
    {},
    {"kind": "x"},
]


def _base(path: Path, small: bool) -> dict:
    data = tomllib.loads(path.read_text())
    kind = data.get("model", {}).get("kind", "")
    if ".py:" in kind:  # relative to the repository root: make it absolute
        data["model"]["kind"] = str(ROOT / kind)
    if small:
        for section, values in SMALL.items():
            data.setdefault(section, {}).update(values)
    return data


def _paths(data: dict, prefix=()) -> list[tuple]:
    out = []
    for key, value in data.items():
        out.append((*prefix, key))
        if isinstance(value, dict):
            out.extend(_paths(value, (*prefix, key)))
    return out


@st.composite
def mutations(draw, small: bool):
    """(TOML text, description) of a mutated shipped config."""
    data = _base(draw(st.sampled_from(CONFIGS)), small)
    notes, duplicate = [], None
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths)) if paths else ("seed",)
        *parents, leaf = path
        table = data
        for p in parents:
            table = table[p]
        op = draw(
            st.sampled_from(["delete", "value", "value", "scale", "unknown", "dup"])
        )
        if op == "delete":
            table.pop(leaf, None)
        elif op == "value":
            table[leaf] = draw(st.sampled_from(WEIRD))
        elif op == "scale" and isinstance(table.get(leaf), int | float):
            factor = draw(st.sampled_from([0, -1, 10**6, 1e-12, 10**15]))
            table[leaf] = table[leaf] * factor
        elif op == "unknown":
            name = draw(st.sampled_from(["colour", "n_sample", "alhpa", "extra"]))
            target = table if draw(st.booleans()) else data
            target[name] = draw(st.sampled_from([1, "x", {"a": 1}]))
        elif op == "dup" and not parents and isinstance(table.get(leaf), dict):
            keys = list(table[leaf])
            if keys:
                duplicate = (leaf, draw(st.sampled_from(keys)))
        notes.append((op, ".".join(map(str, path))))
    text = tomli_w.dumps(data)
    if duplicate is not None:  # a key given twice: a TOML error, reported by line
        section, key = duplicate
        header = f"[{section}]\n"
        if header in text:
            text = text.replace(header, f"{header}{key} = 1\n", 1)
            notes.append(("dup", f"{section}.{key}"))
    return text, notes


def _check_contract(result, directory: Path, expected: set[str], notes) -> None:
    info = (notes, result.output)
    assert result.exit_code in (0, 2), info
    assert "Traceback" not in result.output, info
    if result.exit_code == 2:
        assert isinstance(result.exception, SystemExit), (notes, result.exception)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), info
        assert {p.name for p in directory.iterdir()} == expected, info


def _check(case) -> None:
    text, notes = case
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "c.toml"
        config.write_text(text)
        result = CliRunner().invoke(app, ["check", str(config)])
        _check_contract(result, Path(tmp), {"c.toml"}, notes)


def _run(case) -> None:
    text, notes = case
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "c.toml"
        config.write_text(text)
        args = ["run", str(config), "-o", str(Path(tmp) / "out"), "-q"]
        result = CliRunner().invoke(app, args)
        _check_contract(result, Path(tmp), {"c.toml"}, notes)


FAST = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FAST
@given(mutations(small=False))
def test_check_of_mutated_configs(case):
    _check(case)


@settings(FAST, max_examples=3)
@given(mutations(small=True))
def test_one_step_run_of_mutated_configs(case):
    _run(case)


@pytest.mark.fuzz
@settings(FAST, max_examples=300)
@given(mutations(small=False))
def test_check_of_mutated_configs_many(case):
    _check(case)


@pytest.mark.fuzz
@settings(FAST, max_examples=40)
@given(mutations(small=True))
def test_one_step_run_of_mutated_configs_many(case):
    _run(case)
