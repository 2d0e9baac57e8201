"""Time-dependent variational Monte Carlo (TDVP), real and imaginary time.

The parameters follow the time-dependent variational principle: with log-derivatives
``O_k = ∂ log ψ / ∂θ_k`` of real parameters θ (a complex parameter counts as two, see
``nqs.sr``), the derivative θ̇ minimises the distance between the variational and the
exact evolution,

    min over θ̇ of  Σ_σ p(σ) |ΔO(σ) θ̇ − Δr(σ)|²,   r = −i E_loc (real time, ψ̇ = −iHψ)
                                                    r = −E_loc   (imaginary time)

(Δ: centred with the weights p, the Born probabilities: Monte Carlo samples or the
exact sum of ``[sampler] kind = "full_sum"``), i.e. ``S θ̇ = Re⟨ΔO* Δr⟩`` with the
quantum geometric tensor ``S = Re⟨ΔO†ΔO⟩``. This is the SR system of ``nqs.sr`` with
the residual r instead of E_loc (``natural_gradient`` returns ``S⁻¹ 2Re⟨ΔO*Δr⟩``, so
θ̇ is half of it), solved by the same solvers with the same regularisations: the
diagonal shift, and for solver ``pinv`` the eigenvalue cutoff ``rcond`` and the
signal-to-noise cutoff (``nqs.sr_spectral``).

The time integration is ``nqs.integrate`` (explicit Runge–Kutta, fixed or adaptive);
each stage of each step draws fresh samples: the Markov chains and their PRNG key are
the integrator's auxiliary state. One compiled call, :func:`advance`, integrates from
the current time to the next time of the save grid and then measures the energy and
the observables there on fresh samples; ``nqs.drivers.tdvp_loop`` is the host loop.

Diagnostics per right-hand side (the logged values aggregate the steps between two
saved rows):
    residual     relative TDVP residual Σp|ΔOθ̇ − Δr|² / Σp|Δr|²: 0 when the manifold
                 reproduces the exact derivative, 1 when θ̇ explains none of it;
    n_modes      modes of S kept by the regularisation (all P without ``pinv``);
    snr_min, snr_median   signal-to-noise spectrum of the force (``pinv``, sampling).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from nqs import integrate, parallel, vstate
from nqs.sampler import acceptance, sample_weights
from nqs.sr import SR, natural_gradient

TIMES = ("real", "imaginary")


@dataclasses.dataclass(frozen=True)
class TDVPProblem:
    """Static description of an evolution (hashable: a static jit argument).

    Attributes:
        model: Flax module; apply maps (b, n_sites) int8 to (b,) log ψ.
        sampler: ``nqs.sampler`` sampler (Metropolis, exact or full sum).
        hamiltonian: ``LocalOperator`` of the evolution.
        sr: SR settings (solver and regularisation of S θ̇ = F).
        integrator: a name of ``nqs.integrate.TABLEAUS``.
        dt: the step of fixed-step integrators (the first step of adaptive ones).
        controller: ``nqs.integrate.Controller`` (adaptive integrators) or None.
        error_norm: "qgt" | "euclidean" | "maximum", norm of the adaptive error.
        time: "real" | "imaginary".
        observables: ((name, operator), ...) measured at every saved time.
        chunk_size: samples per chunk of the local estimates (None: all).
        sharding: ``nqs.parallel.SampleSharding`` over devices, or None.
    """

    model: Any
    sampler: Any
    hamiltonian: Any
    sr: SR
    integrator: str = "rk4"
    dt: float = 0.01
    controller: Any = None
    error_norm: str = "qgt"
    time: str = "real"
    observables: tuple[tuple[str, Any], ...] = ()
    chunk_size: int | None = None
    sharding: parallel.SampleSharding | None = None

    def __post_init__(self):
        if self.time not in TIMES:
            raise ValueError(f"time must be one of {TIMES}, got {self.time!r}")
        if self.integrator not in integrate.TABLEAUS:
            raise ValueError(
                f"integrator must be one of {tuple(integrate.TABLEAUS)}, "
                f"got {self.integrator!r}"
            )
        if self.adaptive and self.controller is None:
            raise ValueError(f"the adaptive {self.integrator} needs a controller")

    @property
    def adaptive(self) -> bool:
        """Whether the integrator is adaptive (has an embedded error estimate)."""
        return self.integrator in integrate.ADAPTIVE

    @property
    def tableau(self) -> integrate.Tableau:
        return integrate.TABLEAUS[self.integrator]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Aux:
    """What the right-hand side carries between its calls (the integrator's aux).

    Attributes:
        chain: ``SamplerState`` (owns the PRNG key).
        samples: (n_chains, n_per_chain, n_sites) int8 samples of the last call.
        weights: their weights (full sum) or a () placeholder (Monte Carlo).
        params: the parameters of the last call (where the QGT norm is taken).
    """

    chain: Any
    samples: jax.Array
    weights: jax.Array
    params: Any


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TDVPState:
    """Evolving state; every field is a pytree (checkpointed whole).

    Attributes:
        params: model variables at time ``integ.t``.
        aux: :class:`Aux` (chains, last samples).
        integ: ``nqs.integrate.IntegratorState`` (t, proposed dt, step counts).
        n_rows: () int64, rows (saved times) logged so far.
        n_steps: () int64, accepted integrator steps so far.
        n_rejected: () int64, rejected adaptive attempts so far.
    """

    params: Any
    aux: Aux
    integ: Any
    n_rows: jax.Array
    n_steps: jax.Array
    n_rejected: jax.Array


def init_state(
    problem: TDVPProblem, key: jax.Array, params: Any, t0: float = 0.0
) -> TDVPState:
    """Initial state at time ``t0`` from the initial parameters ``params``."""
    model, sampler = problem.model, problem.sampler
    chain = sampler.init(model, params, key)
    samples, chain = sampler.sample(model, params, chain)  # the first QGT norm's
    w = sample_weights(sampler, model, params, samples)
    weights = jnp.zeros((), jnp.float64) if w is None else w
    aux = Aux(chain=chain, samples=samples, weights=weights, params=params)
    i64 = jnp.int64
    state = TDVPState(
        params=params,
        aux=aux,
        integ=integrate.init_integrator(t0, problem.dt),
        n_rows=jnp.zeros((), i64),
        n_steps=jnp.zeros((), i64),
        n_rejected=jnp.zeros((), i64),
    )
    return shard_state(problem, state)


def shard_state(problem: TDVPProblem, state: TDVPState) -> TDVPState:
    """``state`` placed on the problem's devices (see ``nqs.drivers.vmc``)."""
    sh = problem.sharding
    if sh is None:
        return state
    shardings = jax.tree_util.tree_map(lambda _: sh.replicated, state)
    aux = dataclasses.replace(
        shardings.aux,
        chain=parallel.chain_shardings(state.aux.chain, sh),
        samples=sh.split(sh.axis),
        weights=sh.split(sh.axis) if state.aux.weights.ndim else sh.replicated,
    )
    return parallel.place(state, dataclasses.replace(shardings, aux=aux))


def _centred_mean(x: jax.Array, w: jax.Array | None) -> jax.Array:
    return jnp.mean(x) if w is None else jnp.sum(w * x)


def tangent(model, params, samples: jax.Array, direction) -> jax.Array:
    """ΔO·v at each sample: d/dε log ψ_{θ + εv}(σ), (n,) (complex or real)."""
    sigma = samples.reshape(-1, samples.shape[-1])
    _, d = jax.jvp(lambda p: model.apply(p, sigma), (params,), (direction,))
    return d


def qgt_norm(model, params, samples, weights, v) -> jax.Array:
    """‖v‖_S = sqrt(v† S v) = sqrt(Σ p |ΔO v|²) on the given samples, () float64."""
    d = tangent(model, params, samples, v)
    w = None if weights.ndim == 0 else weights.reshape(-1)
    dc = d - _centred_mean(d, w)
    sq = jnp.abs(dc) ** 2
    return jnp.sqrt(jnp.maximum(_centred_mean(sq, w), 0.0))


def _residual(model, params, samples, r, theta_dot, w) -> jax.Array:
    """Relative TDVP residual Σp|ΔOθ̇ − Δr|² / Σp|Δr|², () float64."""
    d = tangent(model, params, samples, theta_dot)
    r = r.reshape(-1)
    w = None if w is None else w.reshape(-1)
    dc = d - _centred_mean(d, w)
    rc = r - _centred_mean(r, w)
    num = _centred_mean(jnp.abs(dc - rc) ** 2, w)
    den = _centred_mean(jnp.abs(rc) ** 2, w)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def rhs(problem: TDVPProblem, t, params, aux: Aux):
    """θ̇ at (t, θ) from fresh samples (``nqs.integrate`` right-hand side).

    Returns:
        (θ̇ pytree like params, new Aux, info {"energy/mean", "energy/error",
        "energy/variance", "residual", "n_modes", "snr_min", "snr_median"}).
    """
    del t  # the Hamiltonian does not depend on time
    model = problem.model
    samples, chain = parallel.sample(
        problem.sampler, model, params, aux.chain, problem.sharding
    )
    w = sample_weights(problem.sampler, model, params, samples)
    e_stats, e_loc = parallel.expect(problem, params, samples, problem.hamiltonian, w)
    r = -1j * e_loc if problem.time == "real" else -e_loc
    x, sr_info = natural_gradient(
        model, params, samples, r, problem.sr, 0, problem.chunk_size, weights=w
    )
    theta_dot = jax.tree_util.tree_map(lambda a: 0.5 * a, x)
    n_params = vstate.n_real_params(params)
    info = {
        "energy/mean": jnp.real(e_stats.mean),
        "energy/error": e_stats.error,
        "energy/variance": e_stats.variance,
        "residual": _residual(model, params, samples, r, theta_dot, w),
        "n_modes": jnp.asarray(sr_info.get("n_modes", n_params), jnp.int64),
        "snr_min": jnp.asarray(sr_info.get("snr_min", jnp.nan), jnp.float64),
        "snr_median": jnp.asarray(sr_info.get("snr_median", jnp.nan), jnp.float64),
    }
    weights = aux.weights if w is None else w
    new_aux = Aux(chain=chain, samples=samples, weights=weights, params=params)
    return theta_dot, new_aux, info


def _norm(problem: TDVPProblem, aux: Aux):
    """The adaptive error norm; "qgt" is taken on the samples of the last call."""
    if problem.error_norm != "qgt":
        return problem.error_norm

    def norm(v):
        return qgt_norm(problem.model, aux.params, aux.samples, aux.weights, v)

    return norm


def _measure(problem: TDVPProblem, params, chain):
    """Energy and observables at ``params`` on fresh samples."""
    model = problem.model
    samples, chain = parallel.sample(
        problem.sampler, model, params, chain, problem.sharding
    )
    w = sample_weights(problem.sampler, model, params, samples)
    e_stats, _ = parallel.expect(problem, params, samples, problem.hamiltonian, w)
    out = {
        "energy/mean": jnp.real(e_stats.mean),
        "energy/error": e_stats.error,
        "energy/variance": e_stats.variance,
        "energy/tau_corr": e_stats.tau_corr,
        "energy/r_hat": e_stats.r_hat,
        "acceptance": acceptance(chain),
    }
    for name, op in problem.observables:
        stats, _ = parallel.expect(problem, params, samples, op, w)
        out[f"{name}/mean"] = stats.mean.astype(jnp.complex128)
        out[f"{name}/error"] = jnp.asarray(stats.error, jnp.float64)
    return out, chain


@functools.partial(jax.jit, static_argnums=(0, 3))
def advance(
    problem: TDVPProblem, state: TDVPState, t_next, max_steps: int | None = None
) -> tuple[TDVPState, dict]:
    """Integrate from ``state.integ.t`` to ``t_next``, then measure there.

    Fixed-step integrators take ``round((t_next − t) / dt)`` equal steps and land on
    ``t_next`` exactly; adaptive ones take controlled steps, the last one clipped to
    land on ``t_next``. With ``max_steps`` (static) at most that many steps are taken
    (an adaptive run saving every accepted step uses 1).

    Returns:
        (new state, info): info holds () arrays "t", "dt" (last step, NaN if none),
        "steps" (steps taken), "rejected" (attempts rejected), "n_steps",
        "n_rejected" (totals), "residual" (largest over the steps), "n_modes"
        (fewest), "snr_min", "snr_median" (last step), and the measurement at the
        new time: "energy/{mean,error,variance,tau_corr,r_hat}", "acceptance",
        "<observable>/{mean,error}".
    """
    tab = problem.tableau
    t_next = jnp.asarray(t_next, jnp.float64)
    f = functools.partial(rhs, problem)
    cap = jnp.iinfo(jnp.int64).max if max_steps is None else max_steps
    nan = jnp.asarray(jnp.nan, jnp.float64)
    acc0 = {
        "steps": jnp.zeros((), jnp.int64),
        "rejected": jnp.zeros((), jnp.int64),
        "dt": nan,
        "residual": nan,
        "n_modes": jnp.asarray(vstate.n_real_params(state.params), jnp.int64),
        "snr_min": nan,
        "snr_median": nan,
    }

    def fold(acc, info, dt, rejected):
        res = jnp.fmax(acc["residual"], info["residual"])
        return {
            "steps": acc["steps"] + 1,
            "rejected": acc["rejected"] + rejected,
            "dt": jnp.asarray(dt, jnp.float64),
            "residual": res,
            "n_modes": jnp.minimum(acc["n_modes"], info["n_modes"]),
            "snr_min": info["snr_min"],
            "snr_median": info["snr_median"],
        }

    if problem.adaptive:

        def cond(carry):
            st, acc = carry
            return (st.integ.t < t_next) & (acc["steps"] < cap)

        def body(carry):
            st, acc = carry
            norm = _norm(problem, st.aux)
            y, aux, integ, info = integrate.adaptive_step(
                tab, f, problem.controller, norm, st.params, st.aux, st.integ, t_next
            )
            acc = fold(acc, info, info["dt"], info["rejected"])
            new = dataclasses.replace(
                st,
                params=y,
                aux=aux,
                integ=integ,
                n_steps=st.n_steps + info["accepted"].astype(jnp.int64),
                n_rejected=st.n_rejected + info["rejected"],
            )
            return new, acc

        state, acc = jax.lax.while_loop(cond, body, (state, acc0))
    else:
        t0 = state.integ.t
        n_all = jnp.round((t_next - t0) / problem.dt).astype(jnp.int64)
        n_all = jnp.maximum(n_all, 0)
        h = jnp.where(n_all > 0, (t_next - t0) / jnp.maximum(n_all, 1), 0.0)
        n = jnp.minimum(n_all, cap)

        def body(i, carry):
            st, acc = carry
            t = t0 + i * h
            y, aux, info = integrate.fixed_step(tab, f, st.params, st.aux, t, h)
            acc = fold(acc, info, h, 0)
            integ = dataclasses.replace(st.integ, t=t + h)
            new = dataclasses.replace(
                st, params=y, aux=aux, integ=integ, n_steps=st.n_steps + 1
            )
            return new, acc

        state, acc = jax.lax.fori_loop(0, n, body, (state, acc0))
        t_end = jnp.where(n == n_all, jnp.where(n > 0, t_next, t0), t0 + n * h)
        state = dataclasses.replace(
            state, integ=dataclasses.replace(state.integ, t=t_end)
        )
    measured, chain = _measure(problem, state.params, state.aux.chain)
    state = dataclasses.replace(
        state,
        aux=dataclasses.replace(state.aux, chain=chain),
        n_rows=state.n_rows + 1,
    )
    info = {
        "t": state.integ.t,
        **acc,
        "n_steps": state.n_steps,
        "n_rejected": state.n_rejected,
        **measured,
    }
    return state, info
