"""Loading user ansätze from ``"package.module:Class"`` or ``"path/file.py:Class"``.

A custom ansatz is a ``flax.linen.Module`` subclass whose ``__call__`` maps int8
configurations ``(batch, n_sites)`` to log-amplitudes ``(batch,)`` (real or complex).
Its keyword arguments come from the ``[model]`` table; a ``hilbert`` field, if it
declares one, receives the Hilbert space, a ``lattice`` field the lattice, and a
``sector`` field the ``[symmetry]`` sector (``nqs.symmetry.Sector``), which makes
the module responsible for staying in it. Every failure raises ``ValueError`` with one
line naming the spec, the file or the argument (``nqs.errors.InputError`` with the
argument as ``key`` when one argument is to blame). Importing a user file runs its code:
an exception or ``sys.exit`` there is reported like any other import failure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import math
import numbers
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp

from nqs.errors import InputError

DTYPES = {
    "float32": jnp.float32,
    "float64": jnp.float64,
    "complex64": jnp.complex64,
    "complex128": jnp.complex128,
}
_DTYPE_FIELDS = ("param_dtype", "dtype")
_DEFAULT_DTYPES = ("float64", jnp.float64)
# flax.linen.Module bookkeeping fields that are not user arguments
_INTERNAL_FIELDS = ("parent", "name")


def _one_line(exc: BaseException, limit: int = 400) -> str:
    """``Type: message`` on one line, cut to about ``limit`` characters."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[:limit] + " ..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_file_spec(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def _split_spec(spec: str) -> tuple[str, str]:
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(
            f"model {spec!r}: expected 'package.module:Class' or 'path/file.py:Class'"
        )
    return target, attr


def _load_file(target: str, spec: str):
    path = Path(target).expanduser()
    path = (path if path.is_absolute() else Path.cwd() / path).resolve()
    if not path.is_file():
        raise ValueError(f"model {spec!r}: file not found: {path}")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_name = f"nqs_custom_{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"model {spec!r}: cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    # dataclasses (hence flax modules) look their module up in sys.modules
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # user code: sys.exit must not end nqs
        del sys.modules[module_name]
        raise ValueError(
            f"model {spec!r}: importing {path} failed: {_one_line(exc)}"
        ) from exc
    return module


def load_class(spec: str) -> type[nn.Module]:
    """Import the Flax module class named by a custom model spec.

    Args:
        spec: ``"package.module:Class"`` (importlib) or ``"path/file.py:Class"``
            (relative to the working directory, or absolute).
    Returns:
        The class, a subclass of ``flax.linen.Module``.
    Raises:
        ValueError: malformed spec, missing file, failing import, missing attribute,
            or an attribute that is not a ``flax.linen.Module`` subclass.
    """
    target, attr = _split_spec(spec)
    if _is_file_spec(target):
        module = _load_file(target, spec)
    else:
        try:
            module = importlib.import_module(target)
        except (Exception, SystemExit) as exc:
            raise ValueError(
                f"model {spec!r}: importing module {target!r} failed: {_one_line(exc)}"
            ) from exc
    if not hasattr(module, attr):
        raise ValueError(f"model {spec!r}: {target!r} has no attribute {attr!r}")
    cls = getattr(module, attr)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(
            f"model {spec!r}: {attr!r} is not a flax.linen.Module subclass "
            f"(got {type(cls).__name__})"
        )
    return cls


def module_fields(cls: type[nn.Module]) -> tuple[str, ...]:
    """User-settable fields of a Flax module class, in declaration order."""
    return tuple(
        f.name
        for f in dataclasses.fields(cls)
        if f.init and f.name not in _INTERNAL_FIELDS
    )


def _expected_type(field: dataclasses.Field) -> str | None:
    """ "bool", "int", "float" or "str" when the field is declared as one (or, when
    it has no annotation, defaults to one); None otherwise (checked by the probe)."""
    declared = field.type
    if not isinstance(declared, str):
        declared = getattr(declared, "__name__", "")
    if declared in ("bool", "int", "float", "str"):
        return declared
    if declared:
        return None
    default = field.default
    for name, kind in (("bool", bool), ("float", numbers.Real), ("str", str)):
        if isinstance(default, kind):
            return name
    return None


def _check_field_value(field: dataclasses.Field, value) -> None:
    """A TOML value against the field's declared type; numbers must be finite.

    Raises:
        InputError: ``key`` is the field name.
    """
    _finite(value, field.name)
    expected = _expected_type(field)
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if expected == "bool" and not isinstance(value, bool):
        raise InputError(field.name, f"expected true or false, got {value!r}")
    if expected == "int" and not (is_number and isinstance(value, int)):
        raise InputError(field.name, f"expected an integer, got {value!r}")
    if expected == "float" and not is_number:
        raise InputError(field.name, f"expected a number, got {value!r}")
    if expected == "str" and not isinstance(value, str):
        raise InputError(field.name, f"expected a string, got {value!r}")


def _finite(value, key: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(key, f"expected a finite number, got {value}")
    if isinstance(value, list | tuple):
        for v in value:
            _finite(v, key)
    elif isinstance(value, dict):
        for k, v in value.items():
            _finite(v, f"{key}.{k}")


def _to_static(value):
    """TOML lists become tuples so that modules stay hashable (static jit args)."""
    if isinstance(value, list | tuple):
        return tuple(_to_static(v) for v in value)
    return value


def instantiate(
    cls: type[nn.Module],
    hilbert,
    kwargs: dict,
    label: str,
    context: dict | None = None,
) -> nn.Module:
    """Construct ``cls(**kwargs)`` with dtype strings converted and hilbert injected.

    A module without a ``param_dtype`` field accepts ``param_dtype = "float64"`` (the
    config default) and ignores it; any other value is an unknown argument.

    Args:
        cls: Flax module class.
        hilbert: Hilbert space, passed as ``hilbert=`` if ``cls`` has that field and
            ``kwargs`` does not set it.
        kwargs: keyword arguments from the ``[model]`` table (without ``kind``).
        label: how to name the model in error messages.
        context: more objects injected like ``hilbert`` into the fields of the same
            name (``lattice``, ``sector``), unless ``kwargs`` sets them or the value
            is None.
    Returns:
        The module instance.
    Raises:
        ValueError: unknown keyword (lists the fields), unknown dtype name, a value
            of the wrong type for its field (``InputError`` naming the field), or any
            error the constructor raises.
    """
    fields = module_fields(cls)
    kwargs = dict(kwargs)
    if "param_dtype" not in fields and kwargs.get("param_dtype") in _DEFAULT_DTYPES:
        del kwargs["param_dtype"]  # the config default; the module fixes its own dtype
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise ValueError(
            f"model {label!r}: unknown argument(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(fields) or '(none)'}"
        )
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in kwargs.items():
        if key not in _DTYPE_FIELDS:
            _check_field_value(by_name[key], value)
    kwargs = {k: _to_static(v) for k, v in kwargs.items()}
    for key in _DTYPE_FIELDS:
        value = kwargs.get(key)
        if isinstance(value, str):
            if value not in DTYPES:
                raise InputError(
                    key,
                    f"model {label!r}: {key} = {value!r}; "
                    f"expected one of {', '.join(DTYPES)}",
                )
            kwargs[key] = DTYPES[value]
    injected = {"hilbert": hilbert, **(context or {})}
    for name, value in injected.items():
        if name in fields and name not in kwargs and value is not None:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except (Exception, SystemExit) as exc:
        raise ValueError(f"model {label!r}: {_one_line(exc)}") from exc


def check_model(
    model: nn.Module,
    hilbert,
    key: jax.Array,
    label: str | None = None,
    sigma: jax.Array | None = None,
) -> dict:
    """Initialise ``model`` on 3 random valid configurations and check its output.

    Args:
        model: Flax module.
        hilbert: Hilbert space providing ``n_sites`` and ``random_states``.
        key: PRNG key.
        label: how to name the model in messages (e.g. the config's
            ``"path/file.py:Class"``); default the class name.
        sigma: (3, n_sites) int8 valid configurations to use instead of random
            ones drawn with ``key``.
    Returns:
        The variables ``model.init`` produced (``{"params": ...}``).
    Raises:
        ValueError: if init/apply fails (also by ``sys.exit``), or the output is not a
            (3,) real or complex floating array, or it is not finite.
    """
    label = label or type(model).__name__
    k_states, k_init = jax.random.split(key)
    if sigma is None:
        sigma = jax.jit(hilbert.random_states, static_argnums=1)(k_states, 3)
    sigma = jnp.asarray(sigma).astype(jnp.int8)

    def init_and_apply(k):
        variables = model.init(k, sigma)
        return variables, model.apply(variables, sigma)

    try:
        variables, log_psi = jax.jit(init_and_apply)(k_init)
    except InputError:  # a field the module itself refuses, already named
        raise
    except (Exception, SystemExit) as exc:
        raise ValueError(
            f"model {label}: failed on a batch of configurations of shape "
            f"{tuple(sigma.shape)} int8: {_one_line(exc)}"
        ) from exc
    shape = getattr(log_psi, "shape", None)
    if shape != (3,):
        raise ValueError(
            f"model {label}: returned shape {shape} for a batch of 3 configurations; "
            "expected (3,) log-amplitudes (one per configuration)"
        )
    if not jnp.issubdtype(log_psi.dtype, jnp.inexact):
        raise ValueError(
            f"model {label}: returned dtype {log_psi.dtype}; expected a real or "
            "complex floating log-amplitude"
        )
    if not bool(jnp.all(jnp.isfinite(log_psi))):
        raise ValueError(
            f"model {label}: log-amplitudes at initialisation are not finite "
            f"({_one_line(ValueError(log_psi))}); reduce the initial parameter scale "
            "or check the model"
        )
    leaves = jax.tree_util.tree_leaves(variables)
    if not all(bool(jnp.all(jnp.isfinite(x))) for x in leaves):
        raise ValueError(f"model {label}: initial parameters are not finite")
    return variables
