"""Runge–Kutta integrators against closed-form solutions.

The test problem is a pytree of three independent ODEs with known solutions:
``z' = λ z`` (complex), ``x' = A x`` with ``A = [[-d, ω], [-ω, -d]]`` (real, a damped
rotation) and ``w' = w² cos t`` (real, nonlinear and time dependent, ``w(t) = 1 / (1/w0
- sin t)``).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nqs.integrate import (
    ADAPTIVE,
    TABLEAUS,
    Controller,
    IntegratorState,
    Tableau,
    adaptive_step,
    fixed_step,
    init_integrator,
    rk_step,
    scaled_error,
)


@dataclasses.dataclass(frozen=True)
class Problem:
    """The three ODEs as an rhs(t, y, aux) -> (dy, aux, info)."""

    lam: complex = -0.5 + 2j
    decay: float = 0.3
    omega: float = 1.5

    def __call__(self, t, y, aux):
        a = jnp.array([[-self.decay, self.omega], [-self.omega, -self.decay]])
        dy = {"z": self.lam * y["z"], "x": a @ y["x"], "w": y["w"] ** 2 * jnp.cos(t)}
        return dy, aux, {"t": t, "w": y["w"]}

    def exact(self, t, y0):
        c, s = np.cos(self.omega * t), np.sin(self.omega * t)
        rot = np.exp(-self.decay * t) * np.array([[c, s], [-s, c]])
        return {
            "z": np.exp(self.lam * t) * np.asarray(y0["z"]),
            "x": rot @ np.asarray(y0["x"]),
            "w": 1.0 / (1.0 / float(y0["w"]) - np.sin(t)),
        }


@dataclasses.dataclass(frozen=True)
class Recording:
    """Problem's rhs that splits a key from aux at every call and logs it."""

    problem: Problem = Problem()

    def __call__(self, t, y, aux):
        key, sub = jax.random.split(aux["key"])
        n = aux["n"]
        aux = {
            "key": key,
            "n": n + 1,
            "keys": aux["keys"].at[n].set(jax.random.key_data(sub)),
            "t": aux["t"].at[n].set(t),
            "w": aux["w"].at[n].set(y["w"]),
        }
        dy, _, _ = self.problem(t, y, None)
        return dy, aux, {"call": n}


PROBLEM = Problem()
Y0 = {
    "z": jnp.array([1.0 + 0.5j, -0.3j]),
    "x": jnp.array([1.0, -0.5]),
    "w": jnp.array(0.5, jnp.float64),  # not weakly typed, as the steps return it
}
TIGHT = Controller(rtol=1e-8, atol=1e-10, dt_min=1e-6, dt_max=1.0)
LOOSE = Controller(rtol=1e-3, atol=1e-6, dt_min=1e-6, dt_max=0.2)
CRUDE = Controller(rtol=1e-2, atol=1e-4, dt_min=1e-6, dt_max=1.0, max_attempts=1)


def max_abs_error(y, ref):
    return max(float(np.max(np.abs(np.asarray(y[k]) - ref[k]))) for k in ref)


def max_rel_error(y, ref):
    return max(
        float(np.max(np.abs(np.asarray(y[k]) - ref[k]) / np.abs(ref[k]))) for k in ref
    )


def slope(dts, errors):
    return np.polyfit(np.log(dts), np.log(errors), 1)[0]


@functools.partial(jax.jit, static_argnums=0)
def fixed_integrate(name, n, y0):
    """n fixed steps of size 1/n from t = 0 to 1."""
    dt = 1.0 / n

    def body(i, y):
        return fixed_step(TABLEAUS[name], PROBLEM, y, None, i * dt, dt)[0]

    return jax.lax.fori_loop(0, n, body, y0)


STEP = jax.jit(adaptive_step, static_argnums=(0, 1, 2, 3))
RK_STEP = jax.jit(rk_step, static_argnums=(0, 1))


def evolve(name, ctl, y, istate, t_stop, norm="euclidean"):
    """Adaptive steps until t_stop, with statistics of the steps taken."""
    steps, proposals, infos = [], [], []
    for _ in range(5000):
        if float(istate.t) >= t_stop:
            break
        y, _, istate, info = STEP(
            TABLEAUS[name], PROBLEM, ctl, norm, y, None, istate, t_stop
        )
        infos.append(jax.tree.map(np.asarray, info))
        steps.append(float(info["dt"]))
        proposals.append(float(istate.dt))
    else:
        raise AssertionError("t_stop not reached")
    return y, istate, infos, np.array(steps), np.array(proposals)


def run(name, ctl, t_end, dt0, norm="euclidean"):
    return evolve(name, ctl, Y0, init_integrator(0.0, dt0), t_end, norm)


# --- tableaux -------------------------------------------------------------------------


def test_tableaus_are_the_six_schemes():
    # name: (stages, order, error order, embedded)
    expected = {
        "euler": (1, 1, 0, False),
        "heun": (2, 2, 0, False),
        "midpoint": (2, 2, 0, False),
        "rk4": (4, 4, 0, False),
        "rk23": (4, 3, 2, True),
        "rk45": (7, 5, 4, True),
    }
    got = {
        k: (len(t.c), t.order, t.error_order, t.b_low is not None)
        for k, t in TABLEAUS.items()
    }
    assert got == expected and list(got) == list(expected)
    assert ADAPTIVE == ("rk23", "rk45")
    copy = dataclasses.replace(TABLEAUS["rk45"])
    assert copy == TABLEAUS["rk45"] and hash(copy) == hash(TABLEAUS["rk45"])


@pytest.mark.parametrize(
    "a, b, c, b_low",
    [
        pytest.param(((), (0.5,)), (0.5, 0.5), (0.0, 1.0), None, id="row-sum"),
        pytest.param(((), (1.0,)), (0.5, 0.6), (0.0, 1.0), None, id="b-sum"),
        pytest.param(((), (1.0,)), (0.5, 0.5), (0.0, 1.0), (1.0, 0.1), id="b_low-sum"),
        pytest.param(((), (0.5, 0.5)), (0.5, 0.5), (0.0, 1.0), None, id="not-lower"),
        pytest.param(((), (1.0,)), (0.5, 0.5), (0.5, 1.0), None, id="c0"),
    ],
)
def test_tableau_rejects_inconsistent_coefficients(a, b, c, b_low):
    with pytest.raises(ValueError):
        Tableau("bad", a, b, c, b_low, 2, 1)


# --- fixed steps ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, order, ns",
    [
        ("euler", 1, (32, 64, 128, 256)),
        ("heun", 2, (16, 32, 64, 128)),
        ("midpoint", 2, (16, 32, 64, 128)),
        ("rk4", 4, (8, 16, 32, 64)),
        ("rk23", 3, (8, 16, 32, 64)),
        ("rk45", 5, (8, 16, 32, 64)),
    ],
)
def test_global_error_converges_with_the_order(name, order, ns):
    ref = PROBLEM.exact(1.0, Y0)
    errors = [max_abs_error(fixed_integrate(name, n, Y0), ref) for n in ns]
    assert TABLEAUS[name].order == order
    assert abs(slope(1.0 / np.array(ns), errors) - order) < 0.3


LAM = -0.8 + 1.1j


def scalar_linear(t, y, aux):
    return LAM * y, aux, {}


# One step on y' = λy multiplies y by R(z), z = λ dt, and the embedded estimate is
# δ = D(z) y with D = R - R_low (worked out by hand from the published coefficients).
STABILITY = {
    "euler": (lambda z: 1 + z, None),
    "heun": (lambda z: 1 + z + z**2 / 2, None),
    "midpoint": (lambda z: 1 + z + z**2 / 2, None),
    "rk4": (lambda z: 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24, None),
    "rk23": (lambda z: 1 + z + z**2 / 2 + z**3 / 6, lambda z: -(z**3 + z**4) / 48),
    "rk45": (
        lambda z: 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24 + z**5 / 120 + z**6 / 600,
        lambda z: (-97 * z**5 + 39 * z**6 - 5 * z**7) / 120000,
    ),
}


@pytest.mark.parametrize("name", list(STABILITY))
def test_one_linear_step_is_the_stability_polynomial(name):
    r, d = STABILITY[name]
    y0, dt = jnp.array(0.6 - 0.2j), jnp.array(0.35, jnp.float64)
    y1, delta, _, _ = RK_STEP(
        TABLEAUS[name], scalar_linear, jnp.array(0.0), y0, dt, None
    )
    np.testing.assert_allclose(y1, r(LAM * 0.35) * y0, rtol=1e-14)
    if d is None:
        assert delta is None
    else:
        np.testing.assert_allclose(delta, d(LAM * 0.35) * y0, rtol=1e-9)


def cosine(t, y, aux):
    return jnp.cos(t), aux, {}


# On y' = f(t) one step is a quadrature rule of f over [0, h].
QUADRATURE = {
    "euler": lambda h: h,  # rectangle
    "heun": lambda h: h / 2 * (1 + np.cos(h)),  # trapezoid
    "midpoint": lambda h: h * np.cos(h / 2),
    "rk4": lambda h: h / 6 * (1 + 4 * np.cos(h / 2) + np.cos(h)),  # Simpson
}


@pytest.mark.parametrize("name", list(QUADRATURE))
def test_one_step_on_a_quadrature_is_the_classic_rule(name):
    h, y0 = 0.7, jnp.array(0.0, jnp.float64)
    y1, _, _, _ = RK_STEP(
        TABLEAUS[name], cosine, jnp.array(0.0), y0, jnp.array(h), None
    )
    np.testing.assert_allclose(y1, QUADRATURE[name](h), rtol=1e-14)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_embedded_estimate_scales_with_the_lower_order(name):
    tab, t0, dts = TABLEAUS[name], jnp.asarray(0.0), np.array([0.4, 0.2, 0.1, 0.05])
    sizes = []
    for dt in dts:
        _, delta, _, _ = RK_STEP(tab, PROBLEM, t0, Y0, jnp.asarray(dt), None)
        sizes.append(max(float(jnp.max(jnp.abs(v))) for v in jax.tree.leaves(delta)))
    assert abs(slope(dts, sizes) - (tab.error_order + 1)) < 0.3


def decay(t, y, aux):
    """y' = -y leafwise; info records where the stage was evaluated."""
    return jax.tree.map(lambda v: -v, y), aux, {"t": t, "r": y["r"][0]}


def test_step_keeps_dtypes_and_reports_the_first_stage():
    y = {
        "c": jnp.array([1.0 + 1.0j], jnp.complex64),
        "r": jnp.array([2.0], jnp.float32),
    }
    t, dt = jnp.array(0.25, jnp.float64), jnp.array(0.1, jnp.float64)  # not weak
    y_new, delta, _, info0 = RK_STEP(TABLEAUS["rk45"], decay, t, y, dt, None)
    dtypes = {"c": jnp.complex64, "r": jnp.float32}
    assert {k: v.dtype for k, v in y_new.items()} == dtypes
    assert {k: v.dtype for k, v in delta.items()} == dtypes
    assert float(info0["t"]) == 0.25 and float(info0["r"]) == 2.0
    np.testing.assert_allclose(y_new["c"], (1 + 1j) * np.exp(-0.1), rtol=1e-6)
    assert rk_step(TABLEAUS["euler"], decay, t, y, dt, None)[1] is None
    y_fixed, aux, info = fixed_step(TABLEAUS["heun"], decay, y, "aux", t, dt)
    np.testing.assert_allclose(y_fixed["r"], 2.0 * (1 - 0.1 + 0.005), rtol=1e-6)
    assert aux == "aux" and float(info["t"]) == 0.25


# --- error norms ----------------------------------------------------------------------

DELTA = {"a": jnp.array([0.1, -0.2j]), "b": jnp.array([0.3])}
Y = {"a": jnp.array([1.0, 2.0j]), "b": jnp.array([0.0])}
Y_NEW = {"a": jnp.array([2.0, 1.0 + 0j]), "b": jnp.array([2.0])}
# scales 0.5 + 0.1 * max(|y|, |y_new|) = 0.7 each; ratios 1/7, 2/7, 3/7


def test_euclidean_and_maximum_norms_by_hand():
    euclid = scaled_error(DELTA, Y, Y_NEW, rtol=0.1, atol=0.5, norm="euclidean")
    maximum = scaled_error(DELTA, Y, Y_NEW, rtol=0.1, atol=0.5, norm="maximum")
    np.testing.assert_allclose(euclid, np.sqrt(14 / 49 / 3), rtol=1e-14)
    np.testing.assert_allclose(maximum, 3 / 7, rtol=1e-14)
    for norm in ("euclidean", "maximum"):  # the scale takes the larger of |y|, |y_new|
        swapped = scaled_error(DELTA, Y_NEW, Y, rtol=0.1, atol=0.5, norm=norm)
        expected = euclid if norm == "euclidean" else maximum
        np.testing.assert_allclose(swapped, expected, rtol=1e-14)
    with pytest.raises(ValueError):
        scaled_error(DELTA, Y, Y_NEW, rtol=0.1, atol=0.5, norm="l1")


def qgt_norm(v):
    """sqrt(v† S v) with S = diag(1, 4, 9) on the flattened pytree (a, b)."""
    flat = jnp.concatenate([jnp.ravel(v["a"]), jnp.ravel(v["b"])])
    return jnp.sqrt(jnp.sum(jnp.array([1.0, 4.0, 9.0]) * jnp.abs(flat) ** 2))


def test_callable_norm_by_hand():
    # ||delta|| = sqrt(0.01 + 0.16 + 0.81), ||y|| = sqrt(1 + 16), ||y_new|| = sqrt(44)
    expected = np.sqrt(0.98) / (0.5 + 0.1 * np.sqrt(44.0))
    for y, y_new in ((Y, Y_NEW), (Y_NEW, Y)):
        got = scaled_error(DELTA, y, y_new, rtol=0.1, atol=0.5, norm=qgt_norm)
        np.testing.assert_allclose(got, expected, rtol=1e-14)


def weighted_norm(v):
    """A QGT-like norm sqrt(sum_i s_i |v_i|^2) of the test problem's pytree."""
    flat = jnp.concatenate([jnp.ravel(v["w"]), v["x"], v["z"]])
    weights = jnp.array([1.0, 2.0, 3.0, 40.0, 50.0])
    return jnp.sqrt(jnp.sum(weights * jnp.abs(flat) ** 2))


def test_adaptive_step_uses_a_callable_norm():
    tab, ist = TABLEAUS["rk45"], init_integrator(0.0, 0.1)
    _, _, _, info = STEP(tab, PROBLEM, LOOSE, weighted_norm, Y0, None, ist, 5.0)
    _, _, _, info_e = STEP(tab, PROBLEM, LOOSE, "euclidean", Y0, None, ist, 5.0)
    assert int(info["n_attempts"]) == 1 and float(info["dt"]) == 0.1
    y_new, delta, _, _ = RK_STEP(tab, PROBLEM, jnp.asarray(0.0), Y0, ist.dt, None)
    scale = 1e-6 + 1e-3 * max(weighted_norm(Y0), weighted_norm(y_new))
    np.testing.assert_allclose(info["error"], weighted_norm(delta) / scale, rtol=1e-12)
    assert abs(float(info["error"]) / float(info_e["error"]) - 1) > 0.5


# --- adaptive steps -------------------------------------------------------------------


@pytest.mark.parametrize("name", ADAPTIVE)
def test_adaptive_reaches_the_closed_form(name):
    y, ist, infos, _, _ = run(name, TIGHT, t_end=1.0, dt0=0.01)
    assert max_rel_error(y, PROBLEM.exact(1.0, Y0)) < 1e-6
    assert float(ist.t) == 1.0 and int(ist.n_accepted) == len(infos)
    assert y["z"].dtype == jnp.complex128 and y["x"].dtype == jnp.float64


def test_too_large_first_step_is_rejected_and_still_accurate():
    y, ist, infos, steps, proposals = run("rk45", TIGHT, t_end=1.0, dt0=1.0)
    assert int(infos[0]["rejected"]) >= 1 and steps[0] < 0.2
    assert proposals[0] <= steps[0]  # no growth right after a rejection
    assert int(ist.n_rejected) == sum(int(info["rejected"]) for info in infos)
    assert max_rel_error(y, PROBLEM.exact(1.0, Y0)) < 1e-6


def ramp(t, y, aux):
    """y' = 1 for t >= 0.3, else 0: the error estimate of a step drops to 0 abruptly."""
    return jnp.where(t >= 0.3, 1.0, 0.0), aux, {}


def test_no_growth_right_after_a_rejection():
    ist = init_integrator(0.2, 0.2)
    y, _, ist, info = STEP(
        TABLEAUS["rk23"], ramp, LOOSE, "euclidean", jnp.array(0.0), None, ist, 1.0
    )
    assert int(info["rejected"]) == 1 and float(info["error"]) == 0.0
    assert float(info["dt"]) < 0.1  # the retry stays left of the jump
    assert float(ist.dt) == float(info["dt"])  # would be max_factor times it otherwise
    assert float(y) == 0.0


def test_proposed_step_stays_below_dt_max():
    _, _, _, steps, proposals = run("rk45", LOOSE, t_end=2.0, dt0=0.1)
    assert np.all(steps <= LOOSE.dt_max * (1 + 1e-12))
    assert np.max(proposals) == LOOSE.dt_max  # the loose tolerance would go further


def test_step_is_held_at_dt_min_and_flagged():
    ctl = Controller(rtol=1e-14, atol=1e-16, dt_min=0.05, dt_max=1.0)
    y, ist, infos, steps, proposals = run("rk23", ctl, t_end=0.5, dt0=0.001)
    np.testing.assert_allclose(steps, 0.05, rtol=1e-12)
    assert np.all(proposals == 0.05) and all(bool(i["at_dt_min"]) for i in infos)
    assert int(ist.n_accepted) == 10 and int(ist.n_rejected) == 0
    assert max_abs_error(y, PROBLEM.exact(0.5, Y0)) < 1e-3  # 3rd order at dt = 0.05


def test_lands_exactly_on_a_save_grid():
    istate, y = init_integrator(0.0, 0.07), Y0
    for k in range(1, 6):
        y, istate, _, _, _ = evolve("rk45", LOOSE, y, istate, k * 0.1)
        assert float(istate.t) == k * 0.1
    assert max_rel_error(y, PROBLEM.exact(0.5, Y0)) < 1e-4


def test_lands_on_t_stop_where_t_plus_remainder_rounds_off():
    t, t_stop = 1 / 3, 0.9
    assert t + (t_stop - t) != t_stop
    ist = init_integrator(t, 1.0)
    _, _, ist, info = STEP(
        TABLEAUS["rk45"], PROBLEM, CRUDE, "maximum", Y0, None, ist, t_stop
    )
    assert bool(info["accepted"]) and float(ist.t) == t_stop
    assert float(ist.dt) == 1.0  # the proposal survives the clip


def test_clip_to_t_stop_does_not_shrink_the_proposal():
    tab, ist = TABLEAUS["rk45"], init_integrator(0.0, 0.1)
    y, _, ist, info = STEP(tab, PROBLEM, LOOSE, "euclidean", Y0, None, ist, 5.0)
    assert bool(info["accepted"]) and int(info["n_attempts"]) == 1
    proposal, t_stop = ist.dt, float(ist.t + 0.01 * ist.dt)
    y, _, ist, info = STEP(tab, PROBLEM, LOOSE, "euclidean", y, None, ist, t_stop)
    assert float(ist.t) == float(t_stop) and float(info["dt"]) < 0.02 * float(proposal)
    assert float(ist.dt) >= float(proposal)
    _, _, _, info = STEP(tab, PROBLEM, LOOSE, "euclidean", y, None, ist, 5.0)
    assert float(info["dt"]) == float(ist.dt)


def test_pi_controller_law():
    tab, ist = TABLEAUS["rk45"], init_integrator(0.0, 0.02)
    beta1, beta2 = 0.7 / 5, 0.4 / 5
    y, _, ist, info = STEP(tab, PROBLEM, TIGHT, "euclidean", Y0, None, ist, 5.0)
    err1 = float(info["error"])
    assert int(info["n_attempts"]) == 1
    np.testing.assert_allclose(ist.dt, 0.02 * 0.9 * err1**-beta1, rtol=1e-12)
    y, _, ist, info = STEP(tab, PROBLEM, TIGHT, "euclidean", y, None, ist, 5.0)
    err2, dt2 = float(info["error"]), float(info["dt"])
    assert int(info["n_attempts"]) == 1
    np.testing.assert_allclose(
        ist.dt, dt2 * 0.9 * err2**-beta1 * err1**beta2, rtol=1e-12
    )
    assert float(ist.error_prev) == err2


def test_all_attempts_rejected_leaves_the_state():
    ist = init_integrator(0.0, 1.0)
    y, _, ist, info = STEP(
        TABLEAUS["rk45"], PROBLEM, CRUDE, "maximum", Y0, None, ist, 2.0
    )
    assert not bool(info["accepted"]) and int(info["rejected"]) == 1
    assert float(ist.t) == 0.0 and int(ist.n_rejected) == 1 and int(ist.n_accepted) == 0
    assert float(ist.dt) < 0.9  # the next attempt is shorter
    assert all(bool(jnp.all(y[k] == Y0[k])) for k in Y0)


def test_invalid_use_raises():
    ist = init_integrator(0.0, 0.1)
    with pytest.raises(ValueError, match="no error estimate"):
        adaptive_step(TABLEAUS["rk4"], PROBLEM, LOOSE, "euclidean", Y0, None, ist, 1.0)

    def clash(t, y, aux):
        return y, aux, {"dt": t}

    with pytest.raises(ValueError, match="must not use"):
        adaptive_step(TABLEAUS["rk23"], clash, LOOSE, "euclidean", Y0, None, ist, 1.0)
    bad = [{"dt_min": 0.0}, {"dt_min": 2.0}, {"rtol": 0.0, "atol": 0.0}]
    for kwargs in [*bad, {"max_attempts": 0}, {"min_factor": 1.5}]:
        with pytest.raises(ValueError):
            dataclasses.replace(LOOSE, **kwargs)


# --- aux contract ---------------------------------------------------------------------


def recording_aux(n_max=128):
    key = jax.random.key(7)
    return {
        "key": key,
        "n": jnp.array(0, jnp.int32),
        "keys": jnp.zeros((n_max, *jax.random.key_data(key).shape), jnp.uint32),
        "t": jnp.full(n_max, jnp.nan),
        "w": jnp.full(n_max, jnp.nan),
    }


def test_every_stage_of_every_attempt_gets_fresh_aux():
    tab, rhs, ist = TABLEAUS["rk45"], Recording(), init_integrator(0.0, 1.0)
    n_stages = len(tab.c)
    y, aux, ist, info = STEP(
        tab, rhs, TIGHT, "euclidean", Y0, recording_aux(), ist, 2.0
    )
    n_attempts = int(info["n_attempts"])
    assert n_attempts >= 2 and int(info["rejected"]) == n_attempts - 1
    assert int(aux["n"]) == n_stages * n_attempts
    # every attempt starts at (t, y): no first-same-as-last reuse
    first = np.arange(n_attempts) * n_stages
    np.testing.assert_array_equal(np.asarray(aux["t"])[first], 0.0)
    np.testing.assert_array_equal(np.asarray(aux["w"])[first], 0.5)
    # the stage times of the accepted (last) attempt are c_i dt
    last = np.asarray(aux["t"])[first[-1] : first[-1] + n_stages]
    np.testing.assert_allclose(last, np.array(tab.c) * float(info["dt"]), rtol=1e-14)
    assert int(info["call"]) == first[-1]  # the accepted attempt's first-stage info
    n_before = int(aux["n"])
    _, aux, _, info = STEP(tab, rhs, TIGHT, "euclidean", y, aux, ist, 2.0)
    n_calls = int(aux["n"])
    assert n_calls == n_before + n_stages * int(info["n_attempts"])
    keys = np.asarray(aux["keys"])[:n_calls]
    assert len(np.unique(keys, axis=0)) == n_calls


# --- jit ------------------------------------------------------------------------------


def test_jitted_loop_compiles_once():
    traces = []

    @jax.jit
    def to_one(y0):
        traces.append(None)
        tab = TABLEAUS["rk45"]

        def body(carry):
            y, ist = carry
            y, _, ist, _ = adaptive_step(
                tab, PROBLEM, TIGHT, "maximum", y, None, ist, 1.0
            )
            return y, ist

        carry = (y0, init_integrator(0.0, 0.1))
        return jax.lax.while_loop(lambda c: c[1].t < 1.0, body, carry)

    y, ist = to_one(Y0)
    assert isinstance(ist, IntegratorState) and float(ist.t) == 1.0
    assert max_rel_error(y, PROBLEM.exact(1.0, Y0)) < 1e-6
    y0 = {"z": 2.0 * Y0["z"], "x": -Y0["x"], "w": jnp.array(0.25, jnp.float64)}
    y, _ = to_one(y0)
    assert max_rel_error(y, PROBLEM.exact(1.0, y0)) < 1e-6
    assert len(traces) == 1
