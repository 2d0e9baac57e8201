"""HDF5 log: schema attributes, buffered rows, late columns, truncation, h5py access."""

import h5py
import numpy as np
import pytest

from nqs import log


def make_log(tmp_path):
    path = tmp_path / "log.h5"
    log.create_log(path, config_text='name = "t"\n', driver="vmc", attrs={"n_sites": 4})
    return path


def rows(start, stop):
    return [
        {
            "step": s,
            "wall_time": 0.5 * s,
            "energy/mean": -1.0 - s,
            "energy/error": 0.1,
            "rejected": False,
            "obs/mean": 1j * s,
        }
        for s in range(start, stop)
    ]


def test_root_attributes_and_round_trip(tmp_path):
    path = make_log(tmp_path)
    writer = log.LogWriter(path, flush_every=4)
    for row in rows(0, 10):
        writer.append(row)
    # 8 rows flushed, 2 buffered
    assert log.read_log(path)["history"]["step"].tolist() == list(range(8))
    writer.flush()
    log.write_exact(path, -12.5)
    data = log.read_log(path)
    attrs = data["attrs"]
    assert attrs["format"] == "nqs-log" and attrs["format_version"] == 2
    assert attrs["config"] == 'name = "t"\n' and attrs["driver"] == "vmc"
    assert attrs["n_sites"] == 4
    for key in ("nqs_version", "jax_version", "devices", "created"):
        assert attrs[key]
    h = data["history"]
    np.testing.assert_array_equal(h["step"], np.arange(10))
    np.testing.assert_allclose(h["energy/mean"], -1.0 - np.arange(10))
    assert h["obs/mean"].dtype == np.complex128
    np.testing.assert_allclose(h["obs/mean"], 1j * np.arange(10))
    assert h["rejected"].dtype == np.int8
    assert data["exact"]["energy"] == -12.5
    with h5py.File(path, "r") as f:  # plain h5py access, as documented
        assert f["history/energy/mean"].maxshape == (None,)
        assert f["exact/energy"][()] == -12.5


def test_late_and_missing_columns_are_padded(tmp_path):
    path = make_log(tmp_path)
    log.append_rows(path, [{"step": 0, "energy/mean": 1.0}])
    log.append_rows(path, [{"step": 1, "acceptance": 0.5}])
    h = log.read_log(path)["history"]
    assert {k: len(v) for k, v in h.items()} == {
        "step": 2,
        "energy/mean": 2,
        "acceptance": 2,
    }
    assert np.isnan(h["acceptance"][0]) and h["acceptance"][1] == 0.5
    assert h["energy/mean"][0] == 1.0 and np.isnan(h["energy/mean"][1])


def test_truncate_drops_rows_from_step(tmp_path):
    path = make_log(tmp_path)
    log.append_rows(path, rows(0, 25))
    assert log.truncate(path, 12) == 12
    h = log.read_log(path)["history"]
    assert all(len(v) == 12 for v in h.values())
    np.testing.assert_array_equal(h["step"], np.arange(12))
    log.append_rows(path, rows(12, 15))
    np.testing.assert_array_equal(log.read_log(path)["history"]["step"], np.arange(15))


def test_not_a_log(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "something"
    with pytest.raises(ValueError, match="not an nqs log"):
        log.read_log(path)


def test_failed_write_leaves_previous_file(tmp_path):
    path = make_log(tmp_path)
    log.append_rows(path, rows(0, 3))
    with pytest.raises(TypeError):
        log.append_rows(path, [{"step": 3, "energy/mean": object()}])
    np.testing.assert_array_equal(log.read_log(path)["history"]["step"], np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.h5"]
