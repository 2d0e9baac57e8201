"""Explicit Runge–Kutta integrators for a (possibly stochastic) right-hand side.

One generic step, ``rk_step``, reads a Butcher tableau (J. C. Butcher, *Numerical
Methods for Ordinary Differential Equations*): stages ``k_i = f(t + c_i dt, y + dt Σ_j
a_ij k_j)``, solution ``y + dt Σ_i b_i k_i`` and, for embedded pairs, the error estimate
``δ = dt Σ_i (b_i − b*_i) k_i``. ``TABLEAUS`` holds ``euler`` (order 1), ``heun``
(explicit trapezoid, 2), ``midpoint`` (Runge, 2), ``rk4`` (Kutta's classic method, 4)
and the embedded pairs ``rk23`` (P. Bogacki, L. F. Shampine, Appl. Math. Lett. 2, 321
(1989): 4 stages, the 3rd-order solution is propagated) and ``rk45`` (J. R. Dormand,
P. J. Prince, J. Comput. Appl. Math. 6, 19 (1980): 7 stages, the 5th-order solution is
propagated). No FSAL reuse: every step evaluates all its stages, the first at ``(t,
y)``, whose diagnostics describe the state the step starts from.

Right-hand side contract: ``rhs(t, y, aux) -> (dy, aux, info)`` with ``t`` a () float64
array, ``y`` and ``dy`` pytrees of one structure (real or complex leaves), ``aux`` any
pytree of fixed structure (for TDVP: Markov chains and the PRNG key) and ``info`` a dict
of () arrays. Each stage receives the ``aux`` the previous stage returned, also across
the rejected attempts of an adaptive step (a rejected attempt's ``aux`` is carried on,
never rolled back), so a stochastic ``rhs`` never reuses its randomness.

Error norms (``scaled_error``), with ``sc_i = atol + rtol · max(|y_i|, |y_new_i|)`` over
all ``N`` entries of all leaves (complex entries by modulus):

- ``"euclidean"``: ``sqrt((1/N) Σ_i (|δ_i| / sc_i)²)`` (the root mean square of
  Hairer, Nørsett, Wanner, *Solving ODEs I*, Sec. II.4);
- ``"maximum"``: ``max_i |δ_i| / sc_i``;
- a callable ``norm(v) -> () float64``, a vector norm of a pytree, e.g. the QGT norm
  ``‖v‖_S = sqrt(v† S v)``: ``‖δ‖ / (atol + rtol · max(‖y‖, ‖y_new‖))``.

A step is accepted when the scaled error is ≤ 1. Step-size control is the PI controller
of K. Gustafsson, ACM Trans. Math. Softw. 17, 533 (1991), see also *Solving ODEs I*,
Sec. II.4, and Hairer & Wanner, *Solving ODEs II*, Sec. IV.2: ``dt_new = dt · safety ·
err^(−β1) · err_prev^(β2)``, ``β1 = 0.7/k``, ``β2 = 0.4/k``, ``k = error_order + 1``;
a rejected attempt retries with ``dt · safety · err^(−1/k)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "ADAPTIVE",
    "TABLEAUS",
    "Controller",
    "IntegratorState",
    "Tableau",
    "adaptive_step",
    "fixed_step",
    "init_integrator",
    "rk_step",
    "scaled_error",
]

Rhs = Callable[[jax.Array, Any, Any], tuple[Any, Any, dict]]
Norm = str | Callable[[Any], jax.Array]

#: Keys ``adaptive_step`` adds to the info dict (an ``rhs`` must not use them).
STEP_INFO_KEYS = ("dt", "error", "n_attempts", "rejected", "at_dt_min", "accepted")
_ERROR_FLOOR = 1e-10  # scaled errors below this count as this in the controller
_LAND_SLACK = 1 + 1e-12  # a step this close to t_stop lands on it: no sliver steps


@dataclasses.dataclass(frozen=True)
class Tableau:
    """Butcher tableau of an explicit Runge–Kutta method (static, hashable).

    Attributes:
        name: short name, the key in ``TABLEAUS``.
        a: stage coefficients; row ``i`` has ``i`` entries (strictly lower triangular).
        b: weights of the propagated solution, one per stage.
        c: nodes, one per stage, ``c[0] = 0``.
        b_low: weights of the embedded lower-order solution, or None.
        order: order of the ``b`` solution.
        error_order: order of the ``b_low`` solution (0 when there is none).
    """

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    b_low: tuple[float, ...] | None
    order: int
    error_order: int

    def __post_init__(self):
        n = len(self.c)
        if len(self.a) != n or len(self.b) != n or self.c[0] != 0.0:
            raise ValueError(f"{self.name}: need {n} rows of a and weights, c[0] = 0")
        for i, (row, c_i) in enumerate(zip(self.a, self.c, strict=True)):
            if len(row) != i:
                raise ValueError(f"{self.name}: row {i} of a must have {i} entries")
            if abs(sum(row) - c_i) > 1e-12:
                raise ValueError(f"{self.name}: row {i} of a does not sum to c[{i}]")
        for w in (self.b, self.b_low):
            if w is not None and (len(w) != n or abs(sum(w) - 1.0) > 1e-12):
                raise ValueError(f"{self.name}: weights must be {n} and sum to 1")


TABLEAUS: dict[str, Tableau] = {
    "euler": Tableau("euler", ((),), (1.0,), (0.0,), None, 1, 0),
    "heun": Tableau("heun", ((), (1.0,)), (0.5, 0.5), (0.0, 1.0), None, 2, 0),
    "midpoint": Tableau("midpoint", ((), (0.5,)), (0.0, 1.0), (0.0, 0.5), None, 2, 0),
    "rk4": Tableau(
        "rk4",
        ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        (1 / 6, 1 / 3, 1 / 3, 1 / 6),
        (0.0, 0.5, 0.5, 1.0),
        None,
        4,
        0,
    ),
    "rk23": Tableau(
        "rk23",
        ((), (1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
        (2 / 9, 1 / 3, 4 / 9, 0.0),
        (0.0, 1 / 2, 3 / 4, 1.0),
        (7 / 24, 1 / 4, 1 / 3, 1 / 8),
        3,
        2,
    ),
    "rk45": Tableau(
        "rk45",
        (
            (),
            (1 / 5,),
            (3 / 40, 9 / 40),
            (44 / 45, -56 / 15, 32 / 9),
            (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
            (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
            (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
        ),
        (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0),
        (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
        (
            5179 / 57600,
            0.0,
            7571 / 16695,
            393 / 640,
            -92097 / 339200,
            187 / 2100,
            1 / 40,
        ),
        5,
        4,
    ),
}
ADAPTIVE = ("rk23", "rk45")


def _increment(dt: jax.Array, weights, ks: list) -> Any | None:
    """dt Σ_j w_j k_j leafwise in the leaves' dtype, or None when every w_j is 0."""
    pairs = [(w, k) for w, k in zip(weights, ks, strict=True) if w != 0.0]
    if not pairs:
        return None

    def leaf(*k_leaves):
        total = sum(w * k for (w, _), k in zip(pairs, k_leaves, strict=True))
        return (dt * total).astype(k_leaves[0].dtype)

    return jax.tree_util.tree_map(leaf, *[k for _, k in pairs])


def _add(y, inc):
    """y + inc leafwise in y's dtypes (inc None means 0)."""
    if inc is None:
        return y
    return jax.tree_util.tree_map(lambda u, v: (u + v).astype(u.dtype), y, inc)


def rk_step(tableau: Tableau, rhs: Rhs, t: jax.Array, y, dt: jax.Array, aux):
    """One explicit Runge–Kutta step of size ``dt`` from ``(t, y)``.

    Args:
        tableau: the method.
        rhs: ``rhs(t, y, aux) -> (dy, aux, info)`` (module docstring).
        t: () float64 time.
        y: pytree of real or complex arrays.
        dt: () float64 step.
        aux: pytree threaded through the stages in order.
    Returns:
        ``(y_new, delta, aux, info0)``: ``y_new`` like ``y``; ``delta = y_new − y_low``
        like ``y`` (None without an embedded pair); the ``aux`` of the last stage; the
        info dict of the first stage, evaluated at ``(t, y)``.
    """
    ks, info0 = [], None
    for a_i, c_i in zip(tableau.a, tableau.c, strict=True):
        k, aux, info = rhs(t + c_i * dt, _add(y, _increment(dt, a_i, ks)), aux)
        ks.append(k)
        info0 = info if info0 is None else info0
    y_new = _add(y, _increment(dt, tableau.b, ks))
    delta = None
    if tableau.b_low is not None:
        diff = [b - b_low for b, b_low in zip(tableau.b, tableau.b_low, strict=True)]
        delta = _increment(dt, diff, ks)
        delta = jax.tree_util.tree_map(jnp.zeros_like, y) if delta is None else delta
    return y_new, delta, aux, info0


def fixed_step(tableau: Tableau, rhs: Rhs, y, aux, t: jax.Array, dt: jax.Array):
    """A step of fixed size: ``rk_step`` without the error estimate.

    Returns:
        ``(y_new, aux, info0)`` as in ``rk_step``.
    """
    y_new, _, aux, info0 = rk_step(tableau, rhs, t, y, dt, aux)
    return y_new, aux, info0


def scaled_error(delta, y, y_new, rtol: float, atol: float, norm: Norm) -> jax.Array:
    """Error estimate relative to the tolerances; a step is acceptable when ≤ 1.

    Args:
        delta, y, y_new: pytrees of one structure (real or complex leaves).
        rtol, atol: relative and absolute tolerances.
        norm: ``"euclidean"``, ``"maximum"`` or a callable vector norm of a pytree
            (formulas in the module docstring).
    Returns:
        () float64 scaled error.
    """
    if callable(norm):
        scale = atol + rtol * jnp.maximum(norm(y), norm(y_new))
        return jnp.asarray(norm(delta) / scale, dtype=float)
    if norm not in ("euclidean", "maximum"):
        raise ValueError(f"norm must be 'euclidean', 'maximum' or callable: {norm!r}")

    def ratio(d, u, v):
        scale = atol + rtol * jnp.maximum(jnp.abs(u), jnp.abs(v))
        return (jnp.abs(d) / scale).ravel()

    leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(ratio, delta, y, y_new))
    r = jnp.concatenate(leaves)
    return jnp.sqrt(jnp.mean(r**2)) if norm == "euclidean" else jnp.max(r)


@dataclasses.dataclass(frozen=True)
class Controller:
    """Settings of the PI step-size controller (static, hashable).

    Attributes:
        rtol, atol: tolerances of ``scaled_error`` (≥ 0, not both 0).
        dt_min, dt_max: bounds of the proposed step, ``0 < dt_min ≤ dt_max``.
        safety: factor < 1 applied to every proposal.
        min_factor, max_factor: bounds of the step change of one proposal.
        beta1, beta2: PI gains; None means ``0.7/k`` and ``0.4/k``, ``k =
            error_order + 1``.
        max_attempts: attempts per ``adaptive_step`` call before it gives up.
    """

    rtol: float
    atol: float
    dt_min: float
    dt_max: float
    safety: float = 0.9
    min_factor: float = 0.2
    max_factor: float = 5.0
    beta1: float | None = None
    beta2: float | None = None
    max_attempts: int = 10

    def __post_init__(self):
        if self.rtol < 0 or self.atol < 0 or self.rtol + self.atol <= 0:
            raise ValueError("rtol and atol must be >= 0 and not both 0")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError("need 0 < dt_min <= dt_max")
        if not (0 < self.safety <= 1 and 0 < self.min_factor <= 1 <= self.max_factor):
            raise ValueError("need 0 < safety <= 1, 0 < min_factor <= 1 <= max_factor")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def gains(self, error_order: int) -> tuple[float, float]:
        """(beta1, beta2) for a pair whose lower solution has order ``error_order``."""
        k = error_order + 1
        beta1 = 0.7 / k if self.beta1 is None else self.beta1
        return beta1, 0.4 / k if self.beta2 is None else self.beta2


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class IntegratorState:
    """State of the adaptive integrator; every field is a () array.

    Attributes:
        t: () float64 current time.
        dt: () float64 step the controller proposes next (before clipping to a stop).
        error_prev: () float64 scaled error of the last accepted step (1 initially).
        n_accepted: () int32 accepted steps so far.
        n_rejected: () int32 rejected attempts so far.
    """

    t: jax.Array
    dt: jax.Array
    error_prev: jax.Array
    n_accepted: jax.Array
    n_rejected: jax.Array


def init_integrator(t0: float | jax.Array, dt0: float | jax.Array) -> IntegratorState:
    """Integrator state at time ``t0`` with first proposed step ``dt0`` (float64)."""
    count = jnp.zeros((), jnp.int32)
    as_float = lambda x: jnp.asarray(x, dtype=float)  # noqa: E731
    return IntegratorState(as_float(t0), as_float(dt0), as_float(1.0), count, count)


def _attempts(tableau, rhs, ctl: Controller, norm, t, y, aux, remaining, dt0):
    """Attempts in a while loop until one is accepted or ``max_attempts`` are made.

    Returns:
        ``(n, dt_try, aux, ok, forced, h, y_new, err, info0)`` of the last attempt.
    """

    def attempt(dt_try, aux):
        h = jnp.where(remaining <= dt_try * _LAND_SLACK, remaining, dt_try)
        y_new, delta, aux, info0 = rk_step(tableau, rhs, t, y, h, aux)
        err = scaled_error(delta, y, y_new, ctl.rtol, ctl.atol, norm)
        return h, y_new, jnp.where(jnp.isfinite(err), err, jnp.inf), aux, info0

    def body(carry):
        n, dt_try, aux = carry[:3]
        h, y_new, err, aux, info0 = attempt(dt_try, aux)
        forced = (err > 1.0) & (jnp.minimum(h, dt_try) <= ctl.dt_min)
        ok = (err <= 1.0) | forced
        shrink = ctl.safety * err ** (-1.0 / (tableau.error_order + 1))
        retry = h * jnp.clip(shrink, ctl.min_factor, 1.0)
        dt_next = jnp.where(ok, dt_try, jnp.maximum(retry, ctl.dt_min))
        return n + 1, dt_next, aux, ok, forced, h, y_new, err, info0

    info_shape = jax.eval_shape(attempt, dt0, aux)[4]
    if set(info_shape) & set(STEP_INFO_KEYS):
        raise ValueError(f"rhs info must not use the keys {STEP_INFO_KEYS}")
    info = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), info_shape)
    false, zero = jnp.zeros((), bool), jnp.zeros_like(dt0)
    carry = (jnp.zeros((), jnp.int32), dt0, aux, false, false, zero, y, zero, info)
    return jax.lax.while_loop(lambda c: ~c[3] & (c[0] < ctl.max_attempts), body, carry)


def adaptive_step(
    tableau: Tableau,
    rhs: Rhs,
    controller: Controller,
    norm: Norm,
    y,
    aux,
    istate: IntegratorState,
    t_stop: float | jax.Array,
):
    """One accepted adaptive step, retrying rejected attempts inside a while loop.

    An attempt takes ``h = min(dt, t_stop − t)``, ``dt`` the proposal clipped to
    ``[dt_min, dt_max]`` (``t_stop − t`` when within ``dt · (1 + 1e-12)``: rounding
    leaves no sliver). It is accepted when the scaled error is ≤ 1 or ``dt`` or ``h``
    is at ``dt_min`` (``at_dt_min``); otherwise it retries with ``max(dt_min, h ·
    clip(safety · err^(−1/k), min_factor, 1))``. A step reaching ``t_stop`` lands on it
    exactly and leaves the proposal no smaller than ``dt``; after a rejection the
    proposal cannot grow. If all ``max_attempts`` attempts fail, ``y`` and ``t`` stay
    and ``istate.dt`` is the next, shorter step to try. Needs ``t_stop > t``.

    Args:
        tableau: an embedded pair (``b_low`` not None), e.g. ``TABLEAUS["rk45"]``.
        rhs: right-hand side (module docstring); must not return ``STEP_INFO_KEYS``.
        controller: step-size settings.
        norm: ``"euclidean"``, ``"maximum"`` or a callable (``scaled_error``).
        y: pytree of real or complex arrays at ``istate.t``.
        aux: pytree threaded through every stage of every attempt.
        istate: integrator state.
        t_stop: () float64 time not to step past.
    Returns:
        ``(y, aux, istate, info)``: ``info`` is the accepted attempt's first-stage info
        plus ``dt`` (() float64 step taken), ``error`` (() float64 scaled error),
        ``n_attempts`` and ``rejected`` (() int32, this call), ``at_dt_min`` and
        ``accepted`` (() bool).
    Raises:
        ValueError: for a tableau without an embedded pair.
    """
    if tableau.b_low is None:
        raise ValueError(f"{tableau.name} has no error estimate; use fixed_step")
    ctl, t = controller, istate.t
    t_stop = jnp.asarray(t_stop, dtype=t.dtype)
    remaining = jnp.maximum(t_stop - t, 0.0)
    dt0 = jnp.clip(istate.dt, ctl.dt_min, ctl.dt_max)
    carry = _attempts(tableau, rhs, ctl, norm, t, y, aux, remaining, dt0)
    n, dt_try, aux, ok, forced, h, y_new, err, info0 = carry

    beta1, beta2 = ctl.gains(tableau.error_order)
    e = jnp.maximum(err, _ERROR_FLOOR)
    factor = ctl.safety * e ** (-beta1) * istate.error_prev**beta2
    factor = jnp.clip(factor, ctl.min_factor, jnp.where(n > 1, 1.0, ctl.max_factor))
    lands = remaining <= dt_try * _LAND_SLACK
    proposal = jnp.where(lands, jnp.maximum(h * factor, dt_try), h * factor)
    rejected = n - ok.astype(n.dtype)
    istate = IntegratorState(
        t=jnp.where(ok, jnp.where(lands, jnp.maximum(t_stop, t), t + h), t),
        dt=jnp.where(ok, jnp.clip(proposal, ctl.dt_min, ctl.dt_max), dt_try),
        error_prev=jnp.where(ok, e, istate.error_prev),
        n_accepted=istate.n_accepted + ok.astype(jnp.int32),
        n_rejected=istate.n_rejected + rejected,
    )
    y = jax.tree_util.tree_map(lambda u, v: jnp.where(ok, v, u), y, y_new)
    info = dict(info0, dt=h, error=err, n_attempts=n, rejected=rejected)
    return y, aux, istate, dict(info, at_dt_min=forced, accepted=ok)
