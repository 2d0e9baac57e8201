"""Workload names of ``nqs bench``: shipped configs and timing-only configs."""

import pytest

from nqs import bench, config
from nqs.errors import InputError


def test_shipped_configs_come_first():
    assert bench.resolve("heisenberg_chain") == bench.config_dir() / (
        "heisenberg_chain.toml"
    )
    assert bench.resolve("heisenberg_chain_complex").parent == bench.config_dir()


def test_complex_timing_workload_has_the_real_workloads_sampler():
    path = bench.resolve("heisenberg_chain_complex16")
    assert path.parent == bench.workload_dir()
    cfg = config.load(path)
    real = config.load(bench.resolve("heisenberg_chain"))
    assert cfg.model.param_dtype == "complex128"
    assert real.model.param_dtype == "float64"
    assert cfg.model.alpha == real.model.alpha
    fields = ("kind", "rule", "n_chains", "n_samples", "n_discard_per_chain")
    for field in fields:
        assert getattr(cfg.sampler, field) == getattr(real.sampler, field), field
    assert cfg.lattice.extent == (20,)


def test_unknown_workload_lists_both_folders():
    with pytest.raises(InputError) as err:
        bench.resolve("no_such_thing")
    assert err.value.key == "no_such_thing"
    assert "heisenberg_chain," in err.value.message
    assert "heisenberg_chain_complex16" in err.value.message
