"""Optax optimizers and learning-rate schedules from config tables.

``[optimizer]``: ``kind`` is the name of any optax optimizer (``sgd``, ``adam``,
``adamw``, ``rmsprop``, ...); every other key is a keyword argument of that function,
checked against its signature. ``learning_rate`` is a number or a schedule table:

| kind            | keys                                                          |
|-----------------|---------------------------------------------------------------|
| constant        | ``value``                                                     |
| linear          | ``init_value``, ``end_value``, ``transition_steps``,          |
|                 | ``transition_begin`` (0)                                      |
| cosine          | ``init_value``, ``decay_steps``, ``alpha`` (0: final fraction) |
| exponential     | ``init_value``, ``transition_steps``, ``decay_rate``,         |
|                 | ``transition_begin`` (0), ``staircase`` (false),              |
|                 | ``end_value`` (none)                                          |
| warmup_cosine   | ``init_value``, ``peak_value``, ``warmup_steps``,             |
|                 | ``decay_steps``, ``end_value`` (0)                            |

These map to ``optax.schedules.{constant,linear,cosine_decay,exponential_decay,
warmup_cosine_decay}_schedule``. The same tables serve ``preconditioner.diag_shift``.

Complex parameters: optax updates a complex leaf as a pair of real numbers when given
the gradient ``∂E/∂x + i ∂E/∂y`` (the convention of ``nqs.vstate`` and ``nqs.sr``).
"""

from __future__ import annotations

import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nqs.errors import InputError

SCHEDULES: dict[str, Callable[..., optax.Schedule]] = {
    "constant": optax.schedules.constant_schedule,
    "linear": optax.schedules.linear_schedule,
    "cosine": optax.schedules.cosine_decay_schedule,
    "exponential": optax.schedules.exponential_decay,
    "warmup_cosine": optax.schedules.warmup_cosine_decay_schedule,
}

# Types optax annotates numeric arguments with (``optax.ScalarOrSchedule`` without the
# callable, ``chex.Numeric``); an argument annotated only with these takes a number.
_NUMERIC = (jax.Array, np.ndarray, np.bool_, np.number, bool, int, float, complex)


def _check_kwargs(fn: Callable, kwargs: Mapping[str, Any], what: str) -> None:
    sig = inspect.signature(fn)
    params = sig.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    for key in kwargs:
        if key not in params:
            allowed = ", ".join(params)
            raise InputError(
                key, f"{what} has no argument {key!r} (allowed: {allowed})"
            )
    missing = [
        name
        for name, p in params.items()
        if p.default is p.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and name not in kwargs
    ]
    if missing:
        needed = ", ".join(repr(m) for m in missing)
        raise InputError(missing[0], f"{what} needs {needed}")


def _expected_kind(param: inspect.Parameter) -> str | None:
    """What a TOML value of this argument must be: "bool", "int", "number",
    "schedule" (number or schedule table), or None (not known: left to the probe)."""
    ann, default = param.annotation, param.default
    if ann is bool or (ann is param.empty and isinstance(default, bool)):
        return "bool"
    if ann is int:
        return "int"
    if ann is float:
        return "number"
    args = typing.get_args(ann)
    if args and (typing.get_origin(ann) in (typing.Union, types.UnionType)):
        kinds = [a for a in args if a is not type(None)]
        if all(a in _NUMERIC for a in kinds):
            return "number"
        callables = [a for a in kinds if typing.get_origin(a) is Callable]
        if callables and all(a in _NUMERIC or a in callables for a in kinds):
            return "schedule"
        return None
    if ann is param.empty and isinstance(default, numbers.Real):
        return "number"
    return None


def _finite_numbers(value: Any, key: str) -> None:
    """Every float inside ``value`` (nested lists and tables too) is finite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(key, f"expected a finite number, got {value}")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _finite_numbers(v, f"{key}.{k}")
    elif isinstance(value, list | tuple):
        for v in value:
            _finite_numbers(v, key)


def _check_value(value: Any, kind: str | None, key: str) -> None:
    """Type of one argument against ``_expected_kind`` (raises ``InputError(key)``)."""
    _finite_numbers(value, key)
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool" and not isinstance(value, bool):
        raise InputError(key, f"expected true or false, got {value!r}")
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise InputError(key, f"expected an integer, got {value!r}")
    if kind == "number" and not is_number:
        raise InputError(key, f"expected a finite number, got {value!r}")
    if kind == "schedule" and not (is_number or isinstance(value, Mapping)):
        raise InputError(
            key, f"expected a finite number or a schedule table, got {value!r}"
        )


def build_schedule(table: Mapping[str, Any] | float) -> optax.Schedule:
    """A schedule ``step -> value`` from a number or a table (see module docstring).

    Raises:
        InputError: (a ``ValueError``) unknown kind, unknown or missing key, a value of
            the wrong type or not finite; ``key`` is the table's key ("" for the
            table itself).
    """
    if isinstance(table, int | float) and not isinstance(table, bool):
        _check_value(table, "number", "")
        return optax.schedules.constant_schedule(float(table))
    if not isinstance(table, Mapping):
        raise InputError("", f"expected a number or a schedule table, got {table!r}")
    kwargs = dict(table)
    kind = kwargs.pop("kind", None)
    if kind not in SCHEDULES:
        raise InputError(
            "kind", f"schedule kind must be one of {sorted(SCHEDULES)}, got {kind!r}"
        )
    fn = SCHEDULES[kind]
    _check_kwargs(fn, kwargs, f"schedule {kind!r}")
    params = inspect.signature(fn).parameters
    for key, value in kwargs.items():
        _check_value(value, _expected_kind(params[key]), key)
    try:
        return fn(**kwargs)
    except (TypeError, ValueError) as err:
        raise InputError("", f"schedule {kind!r}: {err}") from err


def check_schedule(schedule: optax.Schedule, n_steps: int) -> None:
    """Evaluate ``schedule`` on steps spread over ``[0, n_steps]``; all finite.

    Raises:
        InputError: (key "") a value that is not a finite number, with its step.
    """
    steps = np.unique(np.linspace(0, max(int(n_steps), 1), 65).astype(np.int64))
    try:
        values = np.asarray([np.asarray(schedule(int(t))) for t in steps])
    except Exception as err:  # optax raises whatever the arithmetic raises
        raise InputError("", f"evaluating the schedule failed: {err}") from err
    if not np.issubdtype(values.dtype, np.number) or values.ndim != 1:
        raise InputError("", "the schedule does not give one number per step")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        t = int(steps[bad[0]])
        raise InputError("", f"the schedule is {values[bad[0]]} at step {t}")


def build_optimizer(table: Mapping[str, Any]) -> optax.GradientTransformation:
    """The optax transformation ``optax.<kind>(**rest)`` of an ``[optimizer]`` table.

    Arguments are checked against the optax signature: unknown and missing names, and
    the type of every argument optax annotates as a boolean, an integer or a number
    (finite), or a number-or-schedule (a schedule table is built, see above).

    Args:
        table: {"kind": name of an optax optimizer, "learning_rate": number or
            schedule table, other keyword arguments of that optimizer}.
    Raises:
        InputError: (a ``ValueError``) unknown optimizer, unknown or missing argument,
            a value of the wrong type or not finite, bad schedule; ``key`` names the
            argument within the table (e.g. "b1", "learning_rate.init_value").
    """
    kwargs = dict(table)
    kind = kwargs.pop("kind", None)
    fn = getattr(optax, str(kind), None) if isinstance(kind, str) else None
    if fn is None or not callable(fn) or kind.startswith("_"):
        raise InputError("kind", f"unknown optax optimizer {kind!r}")
    params = inspect.signature(fn).parameters
    if "learning_rate" not in params:
        raise InputError("kind", f"optax.{kind} is not an optimizer (no learning_rate)")
    _check_kwargs(fn, kwargs, f"optax.{kind}")
    for key, value in kwargs.items():
        expected = _expected_kind(params[key])
        _check_value(value, expected, key)
        if isinstance(value, Mapping) and expected == "schedule":
            try:
                kwargs[key] = build_schedule(value)
            except InputError as err:
                raise InputError(_join(key, err.key), err.message) from err
    try:
        out = fn(**kwargs)
    except (TypeError, ValueError) as err:
        raise InputError("", f"optax.{kind}: {err}") from err
    if not isinstance(out, optax.GradientTransformation):
        raise InputError(
            "kind", f"optax.{kind} did not return a gradient transformation"
        )
    return out


def _join(*keys: str) -> str:
    return ".".join(k for k in keys if k)


def _first_update(opt: optax.GradientTransformation, params: Any) -> Any:
    """``opt.update`` once (jitted, as in a step) on a gradient of ones."""

    def step(params):
        grad = jax.tree_util.tree_map(jnp.ones_like, params)
        updates, _ = opt.update(grad, opt.init(params), params)
        return updates

    return jax.jit(step)(params)


def _probe(table: Mapping[str, Any], params: Any, n_steps: int) -> str | None:
    """Why ``table`` fails on ``params`` (None if it does not)."""
    try:
        opt = build_optimizer(table)
        for key, value in table.items():
            if isinstance(value, Mapping):
                try:
                    check_schedule(build_schedule(value), n_steps)
                except InputError as err:
                    raise InputError(key, err.message) from err
        updates = _first_update(opt, params)
    except InputError as err:
        return err.message
    except Exception as err:  # optax raises whatever a bad argument makes it raise
        return f"the first update failed: {type(err).__name__}: {err}"
    leaves = jax.tree_util.tree_leaves(updates)
    if not all(bool(jnp.all(jnp.isfinite(x))) for x in leaves):
        return "the first update on a gradient of ones is not finite"
    return None


def check_optimizer(
    table: Mapping[str, Any], params: Any, n_steps: int
) -> optax.GradientTransformation:
    """Build the optimizer of ``table`` and run it once; blame one argument if it fails.

    Builds it (:func:`build_optimizer`), evaluates its schedules over
    ``[0, n_steps]``, and applies one jitted ``init`` + ``update`` to ``params`` with a
    gradient of ones, which must give finite updates. When that fails, the argument
    whose removal (leaving optax's default) makes it pass is named.

    Args:
        table: the ``[optimizer]`` table.
        params: parameter pytree of the model (arrays; complex leaves allowed).
        n_steps: number of steps of the run (range of the schedules).
    Returns:
        The optax transformation.
    Raises:
        InputError: ``key`` is the culprit within the table ("" if none is found).
    """
    opt = build_optimizer(table)
    for key, value in table.items():
        if isinstance(value, Mapping):
            try:
                check_schedule(build_schedule(value), n_steps)
            except InputError as err:
                raise InputError(_join(key, err.key), err.message) from err
    problem = _probe(table, params, n_steps)
    if problem is None:
        return opt
    fn_params = inspect.signature(getattr(optax, table["kind"])).parameters
    for key in table:
        optional = key in fn_params and fn_params[key].default is not inspect._empty
        if key != "kind" and optional:
            rest = {k: v for k, v in table.items() if k != key}
            if _probe(rest, params, n_steps) is None:
                raise InputError(key, f"{problem} with {key} = {table[key]!r}")
    raise InputError("", problem)
