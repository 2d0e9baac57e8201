"""Config schema: defaults, --set parsing, resolved round trip, and every bad input
refused by the command line with exit code 2 and one line naming the key or file."""

from pathlib import Path

import pytest
import tomllib
from nqs_cli.app import app
from typer.testing import CliRunner

from nqs import config
from nqs.errors import InputError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))

BASE = """
name = "tiny"
seed = 3
[lattice]
kind = "chain"
extent = [6]
[hamiltonian]
kind = "ising"
h = 0.5
"""


def test_defaults_filled():
    cfg = config.loads(BASE)
    assert cfg.name == "tiny" and cfg.seed == 3 and cfg.n_sites == 6
    assert cfg.hamiltonian.kwargs() == {"J": 1.0, "h": 0.5}
    assert cfg.sampler.rule == "local"
    assert cfg.sampler.sweep_size == 6
    assert (cfg.sampler.n_chains, cfg.sampler.n_samples) == (16, 1024)
    assert cfg.driver.kind == "vmc" and cfg.driver.checkpoint_every == 50
    assert cfg.preconditioner.kind == "sr" and cfg.preconditioner.solver == "auto"
    assert cfg.model.kind == "rbm" and cfg.model.param_dtype == "float64"


def test_full_sum_sampler_parses_without_sampling_keys():
    from nqs import build
    from nqs.sampler import FullSumSampler

    text = BASE + '[hilbert]\ntotal_sz = 0\n[sampler]\nkind = "full_sum"\n'
    cfg = config.loads(text)
    assert cfg.sampler.kind == "full_sum"
    assert set(config.to_dict(cfg)["sampler"]) == {"kind"}
    assert config.loads(config.resolved_toml(cfg)) == cfg
    sampler = build.objects(cfg).sampler
    assert sampler == FullSumSampler(build.hilbert(cfg))
    assert sampler.n_samples_per_chain == 20  # C(6, 3) states with S^z = 0


def test_name_defaults_to_file_stem(tmp_path):
    path = tmp_path / "my_run.toml"
    path.write_text(BASE.replace('name = "tiny"', ""))
    assert config.load(path).name == "my_run"


@pytest.mark.parametrize(
    "hilbert, rule",
    [
        ('kind = "spin"', "local"),
        ('kind = "spin"\ntotal_sz = 0', "exchange"),
        ('kind = "spin"\ns = 1\ntotal_sz = 0', "hamiltonian"),
        ('kind = "fock"\nn_max = 3', "local"),
        ('kind = "fock"\nn_max = 3\nn_particles = 6', "hop"),
        ('kind = "fock"\nn_max = 1\nn_particles = 3', "exchange"),
    ],
    ids=["spin", "spin-sz", "spin1-sz", "fock", "fock-n", "hardcore-n"],
)
def test_default_rule(hilbert, rule):
    ham = "bose_hubbard" if "fock" in hilbert else "heisenberg"
    text = BASE.replace('"ising"\nh = 0.5', f'"{ham}"') + f"[hilbert]\n{hilbert}\n"
    assert config.loads(text).sampler.rule == rule


@pytest.mark.parametrize(
    "item, key, value",
    [
        ("sampler.n_samples=4096", ("sampler", "n_samples"), 4096),
        ("optimizer.learning_rate=1e-3", ("optimizer", "learning_rate"), 1e-3),
        ("lattice.pbc=false", ("lattice", "pbc"), False),
        ("lattice.extent=[8, 8]", ("lattice", "extent"), [8, 8]),
        ("model.kind=ffn", ("model", "kind"), "ffn"),
        ('name="a b"', ("name",), "a b"),
        ("x.y = {kind = 'exp', rate = 2}", ("x", "y"), {"kind": "exp", "rate": 2}),
        ("model.path=dir/file.py:Net", ("model", "path"), "dir/file.py:Net"),
    ],
)
def test_parse_override(item, key, value):
    assert config.parse_override(item) == (key, value)


@pytest.mark.parametrize("item", ["sampler.n_samples", "=3", "a..b=1"])
def test_parse_override_refuses(item):
    with pytest.raises(InputError) as err:
        config.parse_override(item)
    assert err.value.key == "--set"


def test_overrides_apply():
    cfg = config.loads(
        BASE,
        overrides=[
            "sampler.n_samples=4096",
            "model.alpha=2",
            "hamiltonian.h=2",
            "observables.mx={kind='magnetization', axis='x'}",
        ],
    )
    assert cfg.sampler.n_samples == 4096
    assert cfg.model.kwargs == {"alpha": 2}
    assert cfg.hamiltonian.h == 2.0
    assert cfg.observables == {"mx": {"kind": "magnetization", "axis": "x"}}


ROUND_TRIP = {
    "base": BASE,
    "custom-lattice": """
[lattice]
kind = "custom"
n_sites = 3
edges = [[0, 1], [1, 2, 1], [0, 2, 2]]
[hamiltonian]
kind = "j1j2"
J2 = 0.25
[model]
kind = "ffn"
widths = [8, 4]
"weird key" = "x"
""",
    "tdvp-schedules": """
name = "quench"
[lattice]
kind = "square"
extent = [2, 3]
pbc = [true, false]
[hilbert]
total_sz = 0
[hamiltonian]
kind = "xxz"
delta = 2
[driver]
kind = "tdvp"
t_end = 1.5
dt = 0.01
integrator = "rk45"
initial_state = "runs/gs"
[optimizer]
kind = "adam"
learning_rate = { kind = "exponential_decay", init_value = 0.1, decay_rate = 0.5 }
b1 = 0.8
[preconditioner]
diag_shift = { kind = "linear_schedule", init_value = 0.1, end_value = 1e-4 }
cg_maxiter = 50
[sampler]
kind = "exact"
n_samples = 64
n_chains = 4
""",
}


@pytest.mark.parametrize("text", list(ROUND_TRIP.values()), ids=list(ROUND_TRIP))
def test_resolved_round_trip(text):
    cfg = config.loads(text)
    resolved = config.resolved_toml(cfg)
    again = config.loads(resolved)
    assert again == cfg
    assert config.resolved_toml(again) == resolved


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_round_trip(path):
    cfg = config.load(path)
    assert config.loads(config.resolved_toml(cfg)) == cfg


# --------------------------------------------------------------- refused inputs
BAD = {
    "unknown-section": ("[lattise]\nkind = 1\n", "lattise", "did you mean `lattice`"),
    "unknown-key": ("[sampler]\nn_sample = 10\n", "sampler.n_sample", "`n_samples`"),
    "wrong-type": ('[sampler]\nn_chains = "many"\n', "sampler.n_chains", "integer"),
    "wrong-type-float": ('[hamiltonian]\nh = "big"\n', "hamiltonian.h", "number"),
    "negative-samples": ("[sampler]\nn_samples = -5\n", "sampler.n_samples", ">= 1"),
    "samples-not-multiple": (
        "[sampler]\nn_samples = 1000\n",
        "sampler.n_samples",
        "use 992 or 1008",
    ),
    "hop-on-spins": ('[sampler]\nrule = "hop"\n', "sampler.rule", "spins"),
    "local-on-constrained": (
        '[hilbert]\ntotal_sz = 0\n[sampler]\nrule = "local"\n',
        "sampler.rule",
        "total_sz",
    ),
    "exchange-unconstrained": (
        '[sampler]\nrule = "exchange"\n',
        "sampler.rule",
        "unconstrained",
    ),
    "bose-hubbard-on-spins": (
        '[hamiltonian]\nkind = "bose_hubbard"\n',
        "hamiltonian.kind",
        "fock",
    ),
    "heisenberg-on-fock": (
        '[hamiltonian]\nkind = "heisenberg"\n[hilbert]\nkind = "fock"\nn_max = 2\n',
        "hamiltonian.kind",
        "spin",
    ),
    "extent-axes": (
        '[lattice]\nkind = "square"\nextent = [6]\n',
        "lattice.extent",
        "2 entries",
    ),
    "marshall-triangular": (
        '[lattice]\nkind = "triangular"\nextent = [3, 3]\n'
        '[hamiltonian]\nkind = "heisenberg"\nsign_rule = "marshall"\n',
        "hamiltonian.sign_rule",
        "bipartite",
    ),
    "marshall-odd-ring": (
        '[lattice]\nkind = "chain"\nextent = [5]\n'
        '[hamiltonian]\nkind = "heisenberg"\nsign_rule = "marshall"\n',
        "hamiltonian.sign_rule",
        "bipartite",
    ),
    "bad-kind": ('[driver]\nkind = "dmrg"\n', "driver.kind", "vmc, tdvp"),
    "total-sz-parity": (
        "[hilbert]\ntotal_sz = 0.5\n",
        "hilbert.total_sz",
        "not reachable",
    ),
    "key-of-other-kind": ("[hamiltonian]\ndelta = 2\n", "hamiltonian.delta", "ising"),
    "missing-required": (
        '[hamiltonian]\nkind = "j1j2"\n',
        "hamiltonian.J2",
        "missing",
    ),
    "deep-wrong-type": ('[lattice]\nextent = "4"\n', "lattice.extent", "list"),
    "float-for-int": ("[sampler]\nn_chains = 16.0\n", "sampler.n_chains", "integer"),
    "key-of-other-kind-heisenberg": (
        '[hamiltonian]\nkind = "heisenberg"\nh = 1.0\n',
        "hamiltonian.h",
        'not a key of hamiltonian.kind = "heisenberg"',
    ),
    "unknown-section-far": ("[solver]\nkind = 1\n", "solver", "unknown section"),
    "unknown-driver-key": ("[driver]\nn_step = 10\n", "driver.n_step", "`n_steps`"),
    "nan-in-schedule": (
        '[optimizer]\nlearning_rate = { kind = "cosine", init_value = nan }\n',
        "optimizer.learning_rate.init_value",
        "finite",
    ),
    "name-dotdot": ('name = ".."\n', "name", "path component"),
    "bool-for-number": ("[hamiltonian]\nh = true\n", "hamiltonian.h", "number"),
    "samples-of-a-full-sum": (
        '[sampler]\nkind = "full_sum"\nn_samples = 64\n',
        "sampler.n_samples",
        'not a key of sampler.kind = "full_sum"',
    ),
    "rule-of-a-full-sum": (
        '[sampler]\nkind = "full_sum"\nrule = "local"\n',
        "sampler.rule",
        "metropolis",
    ),
}


def _merge(extra: str) -> str:
    """BASE with the tables of ``extra`` merged in; a table naming a kind replaces."""
    data = tomllib.loads(BASE)
    for name, table in tomllib.loads(extra).items():
        if not isinstance(table, dict) or "kind" in table:
            data[name] = table
        else:
            data.setdefault(name, {}).update(table)
    return config.dumps(data)


def _invoke(args):
    return CliRunner().invoke(app, args)


def _assert_one_line_error(result, key, fragment):
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {key}: "), lines[0]
    assert fragment in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", list(BAD.values()), ids=list(BAD))
def test_bad_input_refused(tmp_path, case):
    extra, key, fragment = case
    path = tmp_path / "bad.toml"
    path.write_text(_merge(extra))
    result = _invoke(["check", str(path)])
    _assert_one_line_error(result, key, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    _assert_one_line_error(_invoke(["check", str(path)]), str(path), "no such file")


def test_invalid_toml_line_column(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(BASE + "[sampler]\nn_samples = = 3\n")
    result = _invoke(["check", str(path)])
    _assert_one_line_error(result, str(path), "invalid TOML")
    assert "line 11" in result.stderr and "column" in result.stderr


def test_bad_set_value_names_key(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text(BASE)
    result = _invoke(["check", str(path), "--set", "sampler.n_chains=0"])
    _assert_one_line_error(result, "sampler.n_chains", ">= 1")
    result = _invoke(["check", str(path), "--set", "sampler.n_chains"])
    _assert_one_line_error(result, "--set", "KEY=VALUE")


def test_driver_defaults_match_the_driver():
    """The config's safety and early-stop defaults are the driver's own."""
    import dataclasses

    from nqs.drivers import loop, vmc

    d = config.loads(BASE).driver
    assert d.safety() == dataclasses.asdict(vmc.Safety())
    assert (d.patience, d.rel_tol) == (
        loop.EarlyStop().patience,
        loop.EarlyStop().rel_tol,
    )
    assert d.early_stop is False
