"""Thresholds of the ground-state driver: step rejection, collapse, early stopping.

The single source of these defaults: ``nqs.config`` derives the ``[driver]`` keys of
``kind = "vmc"`` (type, default, lower bound, description) from the fields below, and
``nqs.drivers.vmc`` / ``nqs.drivers.loop`` use the same dataclasses. Each field's
metadata holds ``doc`` (one line) and its lower bound (``gt`` or ``ge``).
"""

from __future__ import annotations

import dataclasses


def _threshold(default, doc: str, **bound):
    return dataclasses.field(default=default, metadata={"doc": doc, **bound})


@dataclasses.dataclass(frozen=True)
class Safety:
    """Thresholds of step rejection and collapse detection (``nqs.drivers.vmc``)."""

    jump_errors: float = _threshold(
        10.0, "an energy above the trend by this many error bars is a bad step", gt=0
    )
    jump_spread: float = _threshold(
        10.0, "an energy above the trend by this many spreads is a bad step", gt=0
    )
    ema_weight: float = _threshold(
        0.1, "weight of the newest step in the energy trend (moving average)", gt=0
    )
    warmup: int = _threshold(
        20, "accepted steps before the energy-jump test is active", ge=1
    )
    shift_boost: float = _threshold(
        10.0, "factor on the SR diagonal shift after a bad step", gt=0
    )
    shift_decay: float = _threshold(
        0.5, "decay per accepted step of the boost back to the scheduled shift", gt=0
    )
    max_consecutive_rejections: int = _threshold(
        10, "bad steps in a row that stop the run (log kept)", ge=1
    )
    min_acceptance: float = _threshold(
        0.005, "Metropolis acceptance below this is a collapse sign", gt=0
    )
    max_r_hat: float = _threshold(
        1.5, "split R-hat above this is a collapse sign", gt=0
    )
    variance_tol: float = _threshold(
        1e-10,
        "relative energy variance below this (above exact) is a collapse sign",
        gt=0,
    )
    collapse_patience: int = _threshold(
        3, "consecutive suspect steps that raise the collapse flag", ge=1
    )


@dataclasses.dataclass(frozen=True)
class EarlyStop:
    """Stop when the energy no longer improves.

    Converged at step t when mean(E over the last patience/2 steps) is not lower than
    mean(E over the patience/2 steps before) by more than ``rel_tol · |E|`` plus two
    standard errors of that difference (rejected steps excluded).
    """

    patience: int = _threshold(
        100, "window (steps) of the early-stopping comparison", ge=4
    )
    rel_tol: float = _threshold(
        1e-5, "relative energy improvement below which the run has converged", ge=0
    )
