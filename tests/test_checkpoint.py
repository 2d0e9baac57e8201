"""Checkpoints: exact round trip (typed PRNG keys included) and atomic replacement."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nqs import checkpoint


def make_tree(seed):
    params = {"w": jnp.arange(6.0).reshape(2, 3) * seed, "c": jnp.ones(2) * (1 + 2j)}
    opt_state = optax.adam(0.1).init(params)
    return {
        "params": params,
        "opt": opt_state,
        "key": jax.random.key(seed),
        "raw_key": jax.random.PRNGKey(seed),
        "step": jnp.asarray(seed, jnp.int64),
    }


def test_round_trip_is_bitwise_and_continues_the_random_stream(tmp_path):
    tree = make_tree(3)
    path = tmp_path / "state.ckpt"
    checkpoint.save(path, tree)
    back = checkpoint.load(path, make_tree(0))
    for a, b in zip(
        jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(back), strict=True
    ):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        jax.random.normal(tree["key"], (4,)), jax.random.normal(back["key"], (4,))
    )


def test_mismatched_template_is_rejected(tmp_path):
    path = tmp_path / "state.ckpt"
    checkpoint.save(path, {"a": jnp.zeros(3)})
    with pytest.raises(ValueError, match="expected"):
        checkpoint.load(path, {"a": jnp.zeros(4)})
    with pytest.raises(ValueError, match="arrays"):
        checkpoint.load(path, {"a": jnp.zeros(3), "b": jnp.zeros(1)})


def test_failed_write_never_replaces_the_good_file(tmp_path, monkeypatch):
    path = tmp_path / "state.ckpt"
    checkpoint.save(path, {"a": jnp.arange(3.0)})
    good = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full during rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        checkpoint.save(path, {"a": jnp.arange(3.0) + 1})
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["state.ckpt"]  # temp removed
    np.testing.assert_array_equal(
        checkpoint.load(path, {"a": jnp.zeros(3)})["a"], np.arange(3.0)
    )


def test_half_written_temp_file_is_ignored(tmp_path):
    path = tmp_path / "state.ckpt"
    checkpoint.save(path, {"a": jnp.arange(3.0)})
    data = checkpoint.to_bytes({"a": jnp.arange(3.0) + 5})
    # what a kill -9 between write and rename leaves behind
    (tmp_path / ".state.ckpt.abc.tmp").write_bytes(data[: len(data) // 2])
    np.testing.assert_array_equal(
        checkpoint.load(path, {"a": jnp.zeros(3)})["a"], np.arange(3.0)
    )
    with pytest.raises(Exception):  # noqa: B017 - the truncated archive is unreadable
        checkpoint.from_bytes(data[: len(data) // 2], {"a": jnp.zeros(3)})
