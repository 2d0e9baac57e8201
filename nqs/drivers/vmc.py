"""Ground-state variational Monte Carlo with stochastic reconfiguration.

One iteration is one jitted pure function ``vmc_step(problem, state) -> (state, info)``:
sample → local energies → energy statistics → gradient (SR-preconditioned or plain)
→ optax update → safety checks, with no host round trip. ``nqs.drivers.loop.run``
is the host loop around it: HDF5 log, checkpoints, progress reports, resume.

Safety (all inside the step, with ``jnp.where`` on pytrees):
    * a step is *bad* if its energy estimate, gradient or update is not finite, or if
      the energy jumps above the recent trend:
      ``E > ema + max(jump_errors · error, jump_spread · spread, 1e-8 |ema|)``, where
      ``ema`` and ``spread`` are exponential moving averages (weight ``ema_weight``)
      of the accepted energies and of their absolute deviation from ``ema``; the jump
      test is active once ``warmup`` steps were accepted;
    * a bad energy rolls parameters and optimizer state back to the previous step's,
      a bad update is skipped; either way the SR diagonal shift is multiplied by
      ``shift_boost`` (decaying back by ``shift_decay`` per accepted step) and the
      event is counted (``rejected``, ``n_rejected`` in the log);
    * after ``max_consecutive_rejections`` bad steps in a row the host loop stops
      with ``nqs.drivers.loop.DivergenceError`` after writing the log.
Collapse (sampler stuck, a known failure of frustrated models): a step is suspect
when the acceptance is below ``min_acceptance``, or R̂ above ``max_r_hat``, or the
variance is ≈ 0 (below ``variance_tol · max(1, E²)``) while E is above the exact
energy (when known) by more than ``max(10 · error, 1e-6 |E_exact|)``. A collapse
persists, while a single noisy R̂ (few samples per chain, just after a large update)
does not: the collapse flag is raised once ``collapse_patience`` steps in a row are
suspect, and stays up while they remain so. It is logged per step
(``history/collapsed``) and reported in progress and in the run summary.

Full sum (``nqs.sampler.FullSumSampler``): the samples are the whole basis and
``nqs.sampler.sample_weights`` their Born probabilities, which every estimator of the
step takes (``weights``): energy, observables, gradient and S are exact sums, the
logged error is 0, tau_corr and R̂ are NaN and the acceptance is 1. None of the
collapse signs fires on that (NaN R̂ is not above ``max_r_hat``; a zero variance is
only suspect above the exact energy, i.e. at an excited eigenstate), and with a zero
error the jump test compares the energy with the trend's spread alone.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nqs import parallel, vstate
from nqs.drivers.thresholds import Safety
from nqs.sampler import sample_weights
from nqs.sr import SR, choose_solver, gram_formulation, params_to_real, sr_direction


@dataclasses.dataclass(frozen=True)
class VMCProblem:
    """Static description of a VMC run (hashable: a static jit argument).

    Attributes:
        model: Flax module; apply maps (b, n_sites) int8 to (b,) log ψ.
        sampler: ``nqs.sampler`` sampler (MetropolisSampler / ExactSampler /
            FullSumSampler).
        hamiltonian: ``LocalOperator``.
        optimizer: optax GradientTransformation.
        sr: SR settings, or None for the plain energy gradient.
        observables: ((name, operator), ...) measured every ``observe_every`` steps.
        chunk_size: samples per chunk in local estimates and Jacobians (None: all).
        observe_every: period (in steps) of the observable measurements.
        safety: rejection and collapse thresholds.
        sharding: ``nqs.parallel.SampleSharding`` splitting the chains and samples
            over devices, or None (one device).
    """

    model: Any
    sampler: Any
    hamiltonian: Any
    optimizer: Any
    sr: SR | None = SR()
    observables: tuple[tuple[str, Any], ...] = ()
    chunk_size: int | None = None
    observe_every: int = 1
    safety: Safety = Safety()
    sharding: parallel.SampleSharding | None = None


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class VMCState:
    """Evolving state of a VMC run; every field is a pytree (checkpointed whole).

    Attributes:
        params: model variables (what ``model.init`` returns).
        opt_state: optax state.
        sampler_state: ``SamplerState`` (owns the PRNG key).
        prev_params, prev_opt_state: the previous step's, for rolling back.
        step: () int64, number of steps done.
        shift_multiplier: () float64, ≥ 1, raised after rejected steps.
        n_rejected: () int64, rejected steps so far.
        n_consecutive: () int64, current run of consecutive rejected steps.
        n_good: () int64, accepted steps so far.
        energy_ema, energy_spread: () float64 running trend of accepted energies.
        n_suspect: () int64, current run of consecutive steps with a collapse sign.
        exact_energy: () float64, exact ground-state energy or NaN if unknown.
    """

    params: Any
    opt_state: Any
    sampler_state: Any
    prev_params: Any
    prev_opt_state: Any
    step: jax.Array
    shift_multiplier: jax.Array
    n_rejected: jax.Array
    n_consecutive: jax.Array
    n_good: jax.Array
    energy_ema: jax.Array
    energy_spread: jax.Array
    exact_energy: jax.Array
    n_suspect: jax.Array


def init_state(
    problem: VMCProblem, key: jax.Array, params: Any = None, exact_energy=None
) -> VMCState:
    """Initial state: parameters from ``model.init`` (unless given), chains, optimizer.

    Args:
        problem: the run's static description.
        key: PRNG key (typed or raw); split into parameter and sampler keys.
        params: optional initial variables (e.g. a previous run's final state).
        exact_energy: optional exact ground-state energy (collapse detection).
    """
    k_params, k_sampler = jax.random.split(key)
    if params is None:
        n_sites = problem.sampler.hilbert.n_sites
        params = problem.model.init(k_params, jnp.zeros((1, n_sites), jnp.int8))
    opt_state = problem.optimizer.init(params)
    sampler_state = problem.sampler.init(problem.model, params, k_sampler)
    f64, i64 = jnp.float64, jnp.int64
    state = VMCState(
        params=params,
        opt_state=opt_state,
        sampler_state=sampler_state,
        prev_params=params,
        prev_opt_state=opt_state,
        step=jnp.zeros((), i64),
        shift_multiplier=jnp.ones((), f64),
        n_rejected=jnp.zeros((), i64),
        n_consecutive=jnp.zeros((), i64),
        n_good=jnp.zeros((), i64),
        energy_ema=jnp.zeros((), f64),
        energy_spread=jnp.zeros((), f64),
        exact_energy=jnp.asarray(
            np.nan if exact_energy is None else exact_energy, dtype=f64
        ),
        n_suspect=jnp.zeros((), i64),
    )
    return shard_state(problem, state)


def shard_state(problem: VMCProblem, state: VMCState) -> VMCState:
    """``state`` placed on the problem's devices: the chains split as
    ``problem.sharding`` says, everything else replicated (unchanged without one).
    Also how a checkpoint is loaded onto another number of devices."""
    sh = problem.sharding
    if sh is None:
        return state
    shardings = jax.tree_util.tree_map(lambda _: sh.replicated, state)
    shardings = dataclasses.replace(
        shardings, sampler_state=parallel.chain_shardings(state.sampler_state, sh)
    )
    return parallel.place(state, shardings)


def _tree_where(cond, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(cond, x, y), a, b)


def _all_finite(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _measure(problem: VMCProblem, params, samples, weights) -> dict[str, jax.Array]:
    out = {}
    for name, op in problem.observables:
        stats, _ = parallel.expect(problem, params, samples, op, weights)
        out[f"{name}/mean"] = stats.mean
        out[f"{name}/error"] = stats.error
    return out


_OBS_DTYPE = {"mean": jnp.complex128, "error": jnp.float64}


def _observe(problem: VMCProblem, state: VMCState, samples, weights):
    """Observables every ``observe_every`` steps, NaN otherwise (lax.cond)."""
    if not problem.observables:
        return {}

    def measure():
        out = _measure(problem, state.params, samples, weights)
        return {k: v.astype(_OBS_DTYPE[k.rsplit("/", 1)[1]]) for k, v in out.items()}

    def skip():
        return {
            f"{name}/{field}": jnp.full((), jnp.nan, dtype)
            for name, _ in problem.observables
            for field, dtype in _OBS_DTYPE.items()
        }

    return jax.lax.cond(state.step % problem.observe_every == 0, measure, skip)


@functools.partial(jax.jit, static_argnums=0)
def vmc_step(problem: VMCProblem, state: VMCState) -> tuple[VMCState, dict]:
    """One VMC iteration (jitted once per problem; see the module docstring).

    Returns:
        (new state, info): info holds () arrays: "energy/{mean,error,variance,
        tau_corr,r_hat}" of the current parameters, "acceptance", "diag_shift",
        "grad_norm", "rejected", "n_rejected", "n_consecutive", "collapsed",
        "step" (index of this step), and "<observable>/{mean,error}".
    """
    sf = problem.safety
    model, params = problem.model, state.params
    samples, chain = parallel.sample(
        problem.sampler, model, params, state.sampler_state, problem.sharding
    )
    weights = sample_weights(problem.sampler, model, params, samples)
    e_stats, e_loc = parallel.expect(
        problem, params, samples, problem.hamiltonian, weights
    )
    flat = samples.reshape(-1, samples.shape[-1])
    if problem.sr is None:
        direction = vstate.energy_gradient(
            model, params, flat, e_loc, problem.chunk_size, weights
        )
        g_norm = optax.global_norm(direction)
        shift = jnp.nan
    else:
        direction, sr_info = sr_direction(
            model,
            params,
            flat,
            e_loc,
            problem.sr,
            state.step,
            problem.chunk_size,
            shift_multiplier=state.shift_multiplier,
            weights=weights,
        )
        g_norm, shift = sr_info["grad_norm"], sr_info["diag_shift"]
    updates, opt_state = problem.optimizer.update(direction, state.opt_state, params)
    new_params = optax.apply_updates(params, updates)

    energy = jnp.real(e_stats.mean)
    err = jnp.nan_to_num(e_stats.error, nan=0.0)
    threshold = state.energy_ema + jnp.maximum(
        jnp.maximum(sf.jump_errors * err, sf.jump_spread * state.energy_spread),
        1e-8 * jnp.abs(state.energy_ema),
    )
    jumped = (state.n_good >= sf.warmup) & (energy > threshold)
    bad_energy = ~jnp.isfinite(energy) | jumped
    bad_update = ~(_all_finite(direction) & _all_finite(new_params))
    bad = bad_energy | bad_update

    # accepted: prev <- params, params <- new; bad update: keep params;
    # bad energy: roll back to prev.
    keep = _tree_where(bad_energy, state.prev_params, params)
    keep_opt = _tree_where(bad_energy, state.prev_opt_state, state.opt_state)
    w = sf.ema_weight
    first = state.n_good == 0
    ema = jnp.where(first, energy, state.energy_ema + w * (energy - state.energy_ema))
    spread = jnp.where(
        first,
        0.0,
        state.energy_spread + w * (jnp.abs(energy - ema) - state.energy_spread),
    )
    mult = jnp.where(
        bad,
        state.shift_multiplier * sf.shift_boost,
        jnp.maximum(1.0, state.shift_multiplier * sf.shift_decay),
    )
    acc = _acceptance(chain)
    suspect = _collapse_signs(sf, e_stats, acc, state.exact_energy)
    n_suspect = jnp.where(suspect, state.n_suspect + 1, 0)
    new_state = VMCState(
        params=_tree_where(bad, keep, new_params),
        opt_state=_tree_where(bad, keep_opt, opt_state),
        sampler_state=chain,
        prev_params=_tree_where(bad, state.prev_params, params),
        prev_opt_state=_tree_where(bad, state.prev_opt_state, state.opt_state),
        step=state.step + 1,
        shift_multiplier=mult,
        n_rejected=state.n_rejected + bad,
        n_consecutive=jnp.where(bad, state.n_consecutive + 1, 0),
        n_good=state.n_good + ~bad,
        energy_ema=jnp.where(bad, state.energy_ema, ema),
        energy_spread=jnp.where(bad, state.energy_spread, spread),
        exact_energy=state.exact_energy,
        n_suspect=n_suspect,
    )
    info = {
        "step": state.step,
        "energy/mean": energy,
        "energy/error": e_stats.error,
        "energy/variance": e_stats.variance,
        "energy/tau_corr": e_stats.tau_corr,
        "energy/r_hat": e_stats.r_hat,
        "acceptance": acc,
        "diag_shift": jnp.asarray(shift, jnp.float64),
        "grad_norm": g_norm,
        "rejected": bad,
        "n_rejected": new_state.n_rejected,
        "n_consecutive": new_state.n_consecutive,
        "collapsed": n_suspect >= sf.collapse_patience,
    }
    info.update(_observe(problem, state, samples, weights))
    return new_state, info


def _acceptance(chain) -> jax.Array:
    n_chains = chain.n_accepted.shape[0]
    return jnp.sum(chain.n_accepted) / (n_chains * chain.n_proposed)


def _collapse_signs(sf: Safety, e_stats, acc, exact) -> jax.Array:
    """() bool: this step shows a sign of a collapsed sampler (module docstring)."""
    energy = jnp.real(e_stats.mean)
    low_var = e_stats.variance < sf.variance_tol * jnp.maximum(1.0, energy**2)
    above = energy - exact > jnp.maximum(10 * e_stats.error, 1e-6 * jnp.abs(exact))
    stuck = low_var & jnp.isfinite(exact) & above
    return (acc < sf.min_acceptance) | (e_stats.r_hat > sf.max_r_hat) | stuck


# -- memory estimate ------------------------------------------------------------------


#: Bytes the model's intermediates may take in one chunk of local energies when no
#: ``chunk_size`` is given (:func:`auto_chunk_size`).
ACTIVATION_BUDGET = 2 * 1024**3


#: Primitives whose results XLA stores (products, reductions, data movement); the
#: element-wise ones between them are fused and never stored.
_STORED = (
    "dot",
    "reduce",
    "gather",
    "concatenate",
    "scatter",
    "cum",
    "sort",
    "conv",
    "fft",
    "transpose",
    "argm",
)


def _jaxpr_bytes(jaxpr) -> int:
    """Sum of the sizes of the values a jaxpr stores (``_STORED`` primitives),
    sub-jaxprs included."""
    total = 0
    for eqn in jaxpr.eqns:
        if any(name in eqn.primitive.name for name in _STORED):
            total += sum(
                math.prod(v.aval.shape) * v.aval.dtype.itemsize
                for v in eqn.outvars
                if hasattr(getattr(v, "aval", None), "shape")
            )
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    total += _jaxpr_bytes(inner)
    return total


def activation_bytes(model, n_sites: int) -> float:
    """Bytes per configuration of everything ``model.apply`` computes.

    The growth with the batch of the values its jaxpr stores (what depends on the
    parameters alone drops out): products, reductions and gathers, not the fused
    element-wise chains between them; a projected model counts its M images.
    """
    sizes = []
    for rows in (8, 16):
        sigma = jax.ShapeDtypeStruct((rows, n_sites), jnp.int8)
        shapes = jax.eval_shape(model.init, jax.random.key(0), sigma)
        sizes.append(_jaxpr_bytes(jax.make_jaxpr(model.apply)(shapes, sigma).jaxpr))
    return max(0.0, (sizes[1] - sizes[0]) / 8)


def auto_chunk_size(model, sampler, hamiltonian, n_devices: int = 1) -> int | None:
    """Rows per chunk of local energies (over all devices) that keep the model's
    intermediates on each device's share of the n_samples × n_conn connected
    configurations under ``ACTIVATION_BUDGET``; None (all at once) when they fit
    anyway, as for an RBM on a few dozen sites. A chunk that divides each device's
    rows is preferred when one at least half as large exists."""
    n = sampler.n_chains * sampler.n_samples_per_chain
    n_local = max(1, n // n_devices)
    n_sites = sampler.hilbert.n_sites
    per_sample = activation_bytes(model, n_sites) * int(hamiltonian.n_conn)
    if per_sample * n_local <= ACTIVATION_BUDGET:
        return None
    local = max(1, int(ACTIVATION_BUDGET // per_sample))
    halfway = (local + 1) // 2 - 1
    divisors = (d for d in range(local, halfway, -1) if n_local % d == 0)
    return next(divisors, local) * n_devices


def estimate_memory(problem: VMCProblem) -> int:
    """Rough peak bytes of one step on each device: samples, connected
    configurations, Jacobian, S.

    Everything per sample counts the device's share of the samples (and of a chunk);
    what the solvers gather (the n × n kernel of ``minsr``, the whole Jacobian it is
    built from) and S (P × P) count in full on every device.

    Args:
        problem: the run's static description (or any problem with the same
            ``model``, ``sampler``, ``hamiltonian``, ``sr``, ``chunk_size`` and
            ``sharding``, e.g. ``nqs.drivers.tdvp.TDVPProblem``: one right-hand side
            costs one step).
    Returns:
        bytes (int) per device.
    """
    hil = problem.sampler.hilbert
    n_sites = hil.n_sites
    sampler = problem.sampler
    sharding = getattr(problem, "sharding", None)
    n_dev = 1 if sharding is None else sharding.n_devices
    n = sampler.n_chains * sampler.n_samples_per_chain
    n_local = -(-n // n_dev)
    sigma = jnp.zeros((1, n_sites), jnp.int8)
    shapes = jax.eval_shape(problem.model.init, jax.random.key(0), sigma)
    n_params = sum(
        math.prod(x.shape) * (2 if jnp.issubdtype(x.dtype, jnp.complexfloating) else 1)
        for x in jax.tree_util.tree_leaves(shapes)
    )
    out = jax.eval_shape(problem.model.apply, shapes, sigma)
    cplx = jnp.issubdtype(out.dtype, jnp.complexfloating)
    chunk = problem.chunk_size
    rows = n_local if chunk is None else min(n_local, -(-chunk // n_dev))
    n_conn = int(problem.hamiltonian.n_conn)
    total = n_local * n_sites + rows * n_conn * (n_sites + 16 + 16)
    total += int(rows * n_conn * activation_bytes(problem.model, n_sites))
    total += 6 * n_params * 8  # params, previous params, optimizer state
    if problem.sr is not None:
        m = n * (2 if cplx else 1)
        m_local = n_local * (2 if cplx else 1)
        gram = gram_formulation(problem.model, shapes, sigma, problem.sr)
        use_gram = gram is not None
        solver = choose_solver(problem.sr, m, n_params, use_gram)
        if solver == "minsr" and use_gram:
            # the Gram matrix, its centred copy and the column-major kernel
            total += 4 * n * n * (16 if cplx else 8)
        elif solver != "cg":
            # the per-sample Jacobian, its centred copy and XLA temporaries: peak RSS
            # of a minsr step, RBM alpha=4 on 100 sites, 4096 samples, is ~3.5x X
            total += 3 * m_local * n_params * 8
            if solver in ("dense", "pinv"):
                total += n_params**2 * 8
            else:  # the kernel XXᵀ needs every row
                total += (m**2 + (m - m_local) * n_params) * 8
        else:
            total += 4 * n_params * 8 + 4 * m_local * 8
            total += int(rows * 3 * activation_bytes(problem.model, n_sites))
    else:
        total += rows * n_params * 16
    return int(total)


def n_parameters(params) -> int:
    """Number of real parameters (a complex entry counts twice)."""
    return int(params_to_real(params)[0].shape[0])
