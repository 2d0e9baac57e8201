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
from collections.abc import Callable, Mapping
from typing import Any

import optax

SCHEDULES: dict[str, Callable[..., optax.Schedule]] = {
    "constant": optax.schedules.constant_schedule,
    "linear": optax.schedules.linear_schedule,
    "cosine": optax.schedules.cosine_decay_schedule,
    "exponential": optax.schedules.exponential_decay,
    "warmup_cosine": optax.schedules.warmup_cosine_decay_schedule,
}


def _check_kwargs(fn: Callable, kwargs: Mapping[str, Any], what: str) -> None:
    sig = inspect.signature(fn)
    params = sig.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    for key in kwargs:
        if key not in params:
            allowed = ", ".join(params)
            raise ValueError(f"{what} has no argument {key!r} (allowed: {allowed})")
    missing = [
        name
        for name, p in params.items()
        if p.default is p.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and name not in kwargs
    ]
    if missing:
        raise ValueError(f"{what} needs {', '.join(repr(m) for m in missing)}")


def build_schedule(table: Mapping[str, Any] | float) -> optax.Schedule:
    """A schedule ``step -> value`` from a number or a table (see module docstring).

    Raises:
        ValueError: unknown kind, unknown or missing key.
    """
    if isinstance(table, (int, float)) and not isinstance(table, bool):
        return optax.schedules.constant_schedule(float(table))
    if not isinstance(table, Mapping):
        raise ValueError(f"expected a number or a schedule table, got {table!r}")
    kwargs = dict(table)
    kind = kwargs.pop("kind", None)
    if kind not in SCHEDULES:
        raise ValueError(
            f"schedule kind must be one of {sorted(SCHEDULES)}, got {kind!r}"
        )
    fn = SCHEDULES[kind]
    _check_kwargs(fn, kwargs, f"schedule {kind!r}")
    return fn(**kwargs)


def build_optimizer(table: Mapping[str, Any]) -> optax.GradientTransformation:
    """The optax transformation ``optax.<kind>(**rest)`` of an ``[optimizer]`` table.

    Args:
        table: {"kind": name of an optax optimizer, "learning_rate": number or
            schedule table, other keyword arguments of that optimizer}.
    Raises:
        ValueError: unknown optimizer, unknown or missing argument, bad schedule.
    """
    kwargs = dict(table)
    kind = kwargs.pop("kind", None)
    fn = getattr(optax, str(kind), None) if isinstance(kind, str) else None
    if fn is None or not callable(fn) or kind.startswith("_"):
        raise ValueError(f"unknown optax optimizer {kind!r}")
    params = inspect.signature(fn).parameters
    if "learning_rate" not in params:
        raise ValueError(f"optax.{kind} is not an optimizer (no learning_rate)")
    if "learning_rate" in kwargs and isinstance(kwargs["learning_rate"], Mapping):
        kwargs["learning_rate"] = build_schedule(kwargs["learning_rate"])
    _check_kwargs(fn, kwargs, f"optax.{kind}")
    out = fn(**kwargs)
    if not isinstance(out, optax.GradientTransformation):
        raise ValueError(f"optax.{kind} did not return a gradient transformation")
    return out
