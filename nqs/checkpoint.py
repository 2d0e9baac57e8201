"""Atomic save and load of state pytrees (parameters, optimizer and sampler state).

File format: a numpy ``.npz`` archive holding the leaves of the pytree in
``jax.tree_util`` flattening order (``leaf_00000``, ``leaf_00001``, ...) and a
``__meta__`` entry (format name, version, number of leaves). The tree structure is not
stored: ``load`` takes a template pytree of the same structure (for example the freshly
initialised state) and checks that every leaf's shape and dtype agree. Typed PRNG keys
are stored as their ``jax.random.key_data`` and re-wrapped with the template's
implementation, so the random stream continues bit for bit.

Atomicity: ``save`` writes a temporary file in the target directory, flushes and
fsyncs it, then ``os.replace``-s it over the target (and fsyncs the directory), so a
reader or a crash at any moment sees either the previous complete file or the new one.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from nqs import atomic
from nqs.errors import InputError

FORMAT = "nqs-checkpoint"
FORMAT_VERSION = 1


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :mod:`nqs.atomic`)."""
    with atomic.replacing(path) as tmp:
        tmp.write_bytes(data)


def to_bytes(tree: Any) -> bytes:
    """Serialise the leaves of ``tree`` (see the module docstring)."""
    leaves = jax.tree_util.tree_leaves(jax.device_get(tree))
    arrays = {}
    for i, leaf in enumerate(leaves):
        if _is_key(leaf):
            leaf = jax.random.key_data(leaf)
        arrays[f"leaf_{i:05d}"] = np.asarray(leaf)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "n_leaves": len(leaves)}
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    return buf.getvalue()


def _decode(data: bytes) -> list[np.ndarray]:
    """The stored leaves of a checkpoint (ValueError if it is not a readable one)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if "__meta__" not in z:
                raise ValueError("not an nqs checkpoint (no __meta__)")
            meta = json.loads(bytes(z["__meta__"]).decode())
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ValueError("not an nqs checkpoint (wrong format)")
            return [z[f"leaf_{i:05d}"] for i in range(int(meta["n_leaves"]))]
    except ValueError:
        raise
    except Exception as err:  # truncated or garbled: zipfile, zlib, KeyError, EOF...
        text = " ".join(str(err).split())[:200]
        raise ValueError(f"unreadable ({type(err).__name__}: {text})") from err


def _match(stored: list[np.ndarray], like: Any) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(like)
    if len(stored) != len(leaves):
        raise ValueError(
            f"checkpoint has {len(stored)} arrays, the state expects {len(leaves)}"
        )
    out = []
    for i, (arr, ref) in enumerate(zip(stored, leaves, strict=True)):
        if _is_key(ref):
            expected = jax.random.key_data(ref)
            if arr.shape != expected.shape:
                raise ValueError(f"leaf {i}: PRNG key data shape {arr.shape} differs")
            out.append(jax.random.wrap_key_data(arr, impl=jax.random.key_impl(ref)))
            continue
        ref_shape, ref_dtype = np.shape(ref), np.asarray(ref).dtype
        if arr.shape != ref_shape or arr.dtype != ref_dtype:
            raise ValueError(
                f"leaf {i}: stored {arr.dtype}{list(arr.shape)}, "
                f"expected {ref_dtype}{list(ref_shape)}"
            )
        out.append(jax.numpy.asarray(arr))
    return jax.tree_util.tree_unflatten(treedef, out)


def from_bytes(data: bytes, like: Any) -> Any:
    """Inverse of :func:`to_bytes`, with the structure, shapes and dtypes of ``like``.

    Raises:
        ValueError: not a (readable) checkpoint, or leaves that do not match ``like``.
    """
    return _match(_decode(data), like)


def save(path: str | os.PathLike, tree: Any) -> None:
    """Atomically save the pytree ``tree`` to ``path``."""
    atomic_write(path, to_bytes(tree))


def load(path: str | os.PathLike, like: Any) -> Any:
    """Load a pytree saved by :func:`save`, structured like ``like``.

    Raises:
        FileNotFoundError: no file at ``path``.
        InputError: (a ``ValueError``, ``key`` = the path) the file is corrupt (not a
            readable checkpoint) or does not match ``like``.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        stored = _decode(data)
    except ValueError as err:
        raise InputError(str(path), f"corrupt checkpoint: {err}") from err
    try:
        return _match(stored, like)
    except ValueError as err:
        raise InputError(
            str(path), f"checkpoint does not match this run's state: {err}"
        ) from err
