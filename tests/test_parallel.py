"""Samples split over devices and processes give the run one device gives.

The multi-device comparisons run in a fresh interpreter with 4 CPU devices
(``tests/multidevice_checks.py``: JAX fixes the device count when it starts); the
two-process run uses ``jax.distributed`` on localhost.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nqs_cli.app import app
from typer.testing import CliRunner

from nqs import config, log, models, parallel, vstate
from nqs.errors import InputError
from nqs.hilbert import Spin
from nqs.models.precision import ComputeDtype
from nqs.sr import SR, natural_gradient

ROOT = Path(__file__).resolve().parents[1]
TFIM = ROOT / "configs" / "tfim_chain.toml"


def _env(n_devices: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if n_devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
    env.setdefault("NQS_NO_CACHE", "1")
    return env


@pytest.fixture(scope="module")
def on_devices():
    """Results of ``multidevice_checks.py`` on 1, 2 and 4 devices."""
    script = Path(__file__).with_name("multidevice_checks.py")
    proc = subprocess.run(
        [sys.executable, str(script)],
        env=_env(4),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _rel(a, b) -> float:
    """Largest relative difference; an estimate that is NaN (e.g. R-hat of chains
    too short to split) must be NaN in both."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    nan = np.isnan(b)
    if not np.array_equal(np.isnan(a), nan):
        return np.inf
    a, b = a[~nan], b[~nan]
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def test_twenty_tfim_steps_agree_on_1_2_and_4_devices(on_devices):
    runs = on_devices["tfim_20_steps"]
    # 20 energies, six estimates and the observable of the last step, the norm of
    # the final parameters
    assert len(runs["1"]) == 20 + 6 + 1 + 1
    assert np.all(np.isfinite(runs["1"]))
    assert _rel(runs["2"], runs["1"]) < 1e-8
    assert _rel(runs["4"], runs["1"]) < 1e-8
    # the energy went down: the run did something
    assert runs["1"][19] < runs["1"][0] - 1.0


@pytest.mark.parametrize("solver", ["dense", "minsr", "cg", "pinv"])
def test_every_solver_with_chunks_agrees_on_2_and_4_devices(on_devices, solver):
    runs = on_devices[f"complex_{solver}_chunked"]
    assert _rel(runs["2"], runs["1"]) < 1e-10
    assert _rel(runs["4"], runs["1"]) < 1e-10


def test_gram_minsr_agrees_on_2_and_4_devices(on_devices):
    runs = on_devices["heisenberg_gram_minsr"]
    assert _rel(runs["2"], runs["1"]) < 1e-10
    assert _rel(runs["4"], runs["1"]) < 1e-10


@pytest.mark.parametrize("case", ["tdvp_real_time", "tdvp_full_sum"])
def test_tdvp_steps_agree_on_4_devices(on_devices, case):
    runs = on_devices[case]
    assert _rel(runs["4"], runs["1"]) < 1e-10


def test_checkpoint_resumes_on_another_device_count(on_devices):
    resumed = on_devices["resumed"]
    # 10 steps on 4 devices then 10 more on 2 = 20 uninterrupted steps on 1
    assert _rel(resumed["energies"], on_devices["tfim_20_steps"]["1"][:20]) < 1e-8
    assert (
        "row 10: resumed on cpu:0, cpu:1 (was cpu:0, cpu:1, cpu:2, cpu:3)"
        in (resumed["notes"])
    )


# -- chunks ------------------------------------------------------------------------


def test_chunks_interleave_rows_and_join_back():
    x = jnp.arange(10 * 3).reshape(10, 3)
    chunks = vstate.split_chunks(x, 4)  # 3 chunks of 4 rows, 2 padded
    assert chunks.shape == (3, 4, 3)
    # row i of chunk j is x[i * n_chunks + j]
    np.testing.assert_array_equal(chunks[1, 2], x[2 * 3 + 1])
    np.testing.assert_array_equal(chunks[2, 3], x[0])  # padding: the first row
    np.testing.assert_array_equal(vstate.join_chunks(chunks, 10), x)


def test_chunked_cg_products_equal_the_stored_linearisation():
    hil = Spin(6)
    model = models.build("rbm", hil, alpha=2, param_dtype="complex128")
    params = model.init(jax.random.key(0), jnp.zeros((1, 6), jnp.int8))
    params = jax.tree_util.tree_map(lambda p: p * 3.0, params)
    sigma = hil.random_states(jax.random.key(1), 23).astype(jnp.int8)
    residual = jax.random.normal(jax.random.key(2), (23,)) + 0j
    sr = SR(solver="cg", diag_shift=0.1, cg_tol=1e-12, cg_maxiter=500)
    whole, _ = natural_gradient(model, params, sigma, residual, sr, 0, None)
    chunked, _ = natural_gradient(model, params, sigma, residual, sr, 0, 5)
    a, _ = vstate.ravel(whole)
    b, _ = vstate.ravel(chunked)
    assert float(jnp.linalg.norm(a)) > 1e-3
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


# -- single precision ----------------------------------------------------------------


def test_float32_compute_keeps_double_parameters_and_outputs():
    hil = Spin(10)
    inner = models.build("rbm", hil, alpha=2, param_dtype="complex128")
    model = ComputeDtype(inner, "float32")
    params = model.init(jax.random.key(0), jnp.zeros((1, 10), jnp.int8))
    assert all(x.dtype == jnp.complex128 for x in jax.tree_util.tree_leaves(params))
    sigma = hil.random_states(jax.random.key(1), 64).astype(jnp.int8)
    low, high = model.apply(params, sigma), inner.apply(params, sigma)
    assert low.dtype == jnp.complex128
    # single-precision accuracy, not double: the evaluation really is float32
    err = float(jnp.max(jnp.abs(low - high)))
    assert 1e-12 < err < 1e-4 * float(jnp.max(jnp.abs(high)))
    jaxpr = str(jax.make_jaxpr(model.apply)(params, sigma))
    assert "c64" in jaxpr


def test_model_dtype_key_builds_the_single_precision_model():
    cfg = config.load(TFIM, overrides=['model.dtype="float32"'])
    from nqs import build

    module = build.model(cfg, build.hilbert(cfg), build.lattice(cfg))
    assert isinstance(module, ComputeDtype) and module.dtype == "float32"


# -- bad input -------------------------------------------------------------------------


def test_uneven_chains_are_refused_naming_nearest_values():
    with pytest.raises(InputError) as err:
        parallel.check_divisible(18, 4)
    assert err.value.key == "sampler.n_chains"
    assert "16 or 20" in err.value.message
    parallel.check_divisible(16, 4)  # fine


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_more_devices_than_visible_exits_2_writing_nothing(tmp_path):
    n = jax.device_count()
    out = tmp_path / "run"
    res = _invoke("run", TFIM, "-o", out, "--set", f"parallel.devices={n + 1}")
    assert res.exit_code == 2
    assert "parallel.devices" in res.output and "JAX sees" in res.output
    assert not out.exists()


@pytest.mark.parametrize(
    "setting, key",
    [
        ("parallel.num_processes=2", "parallel.coordinator"),
        ("parallel.process_id=1", "parallel.coordinator"),
        ('parallel.coordinator="localhost:1"', "parallel.num_processes"),
    ],
)
def test_incomplete_distributed_settings_exit_2(tmp_path, setting, key):
    out = tmp_path / "run"
    res = _invoke("run", TFIM, "-o", out, "--set", setting)
    assert res.exit_code == 2, res.output
    assert key in res.output
    assert not out.exists()


def test_uneven_chains_on_four_devices_exit_2():
    proc = subprocess.run(
        [sys.executable, "-c", "from nqs_cli.app import main; main()", "check"]
        + [str(TFIM), "--set", "sampler.n_chains=6", "--set", "sampler.n_samples=60"],
        env=_env(4),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "sampler.n_chains" in proc.stderr and "4 or 8" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# -- several processes -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_run_the_one_process_energies(tmp_path):
    common = ["--set", "driver.n_steps=8", "--set", "driver.checkpoint_every=4"]
    common += ["--set", "lattice.extent=[12]", "--set", "sampler.n_samples=256"]
    cli = [sys.executable, "-c", "from nqs_cli.app import main; main()", "run"]
    port = _free_port()
    procs = [
        subprocess.Popen(
            cli
            + [str(TFIM), "-o", str(tmp_path / "two"), "--quiet", *common]
            + ["--set", f'parallel.coordinator="localhost:{port}"']
            + ["--set", "parallel.num_processes=2"]
            + ["--set", f"parallel.process_id={i}"],
            env=_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    assert "completed at step 8" in outs[0][0]
    assert "completed" not in outs[1][0]  # process 1 reports nothing
    one = subprocess.run(
        cli + [str(TFIM), "-o", str(tmp_path / "one"), "--quiet", *common],
        env=_env(1),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two_log, one_log = (
        log.read_log(tmp_path / "two" / "log.h5"),
        log.read_log(tmp_path / "one" / "log.h5"),
    )
    e2, e1 = two_log["history"]["energy/mean"], one_log["history"]["energy/mean"]
    assert e2.shape == (8,)
    assert _rel(e2, e1) < 1e-10
    assert log.read_attrs(tmp_path / "two" / "log.h5")["devices"].count("cpu:") == 2


# -- memory --------------------------------------------------------------------------

_PEAK = """
import ctypes, json, os, sys, threading, time
import jax
from nqs import config, prepare
from nqs.drivers import vmc

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


cfg = config.load(sys.argv[1], overrides=sys.argv[2:])
prep = prepare.prepare(cfg)
compiled = prepare.compiled_memory(prep)
step = vmc.vmc_step.lower(prep.problem, prep.state).compile()
ctypes.CDLL("libc.so.6").malloc_trim(0)  # give back what compiling freed
before = resident()
peak, running = [before], [True]


def poll():
    while running[0]:
        peak[0] = max(peak[0], resident())
        time.sleep(0.0005)


thread = threading.Thread(target=poll)
thread.start()
state = prep.state
for _ in range(2):
    state, info = step(state)
    jax.block_until_ready(info)
running[0] = False
thread.join()
json.dump({"compiled": compiled, "grown": peak[0] - before,
           "bound": vmc.estimate_memory(prep.problem)}, sys.stdout)
"""


def _peak(*overrides: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK, str(TFIM), *overrides],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/proc/self/statm").exists(),
    reason="polls the resident memory in /proc/self/statm, which only Linux has",
)
def test_measured_peak_memory_is_the_compiled_estimate_and_chunks_bound_it():
    big = ("lattice.extent=[100]", "model.alpha=4", "sampler.n_samples=4096")
    big += ('preconditioner.solver="cg"',)
    whole = _peak(*big, "driver.chunk_size=4096")
    # local energies of 4096 x 101 configurations at once: ~0.4 GB of the model's
    # intermediates, beyond the runtime's fixed memory measured before the steps
    assert whole["compiled"] > 3e8
    grown = whole["grown"]
    assert whole["compiled"] / 1.5 < grown < 1.5 * whole["compiled"]
    assert whole["bound"] >= whole["compiled"]  # the quick estimate is a bound
    chunked = _peak(*big, "driver.chunk_size=512")
    assert chunked["compiled"] < whole["compiled"] / 4
    assert chunked["grown"] < grown / 2
