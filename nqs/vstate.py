"""Variational-state estimators: local values, expectations, Jacobians and gradients.

``model`` is a Flax module and ``params`` the variables pytree passed to
``model.apply`` as is; ``model.apply(params, sigma)`` maps (batch, n_sites) int8
configurations to (batch,) log-amplitudes log psi, real or complex. ``op`` is an
operator (``nqs.operator.LocalOperator``) with
``get_conn(sigma) -> (sigma_p (..., n_conn, n_sites), mels (..., n_conn))``.

Real formulation of the parameters: every real leaf entry is one real parameter x, every
complex leaf entry w = x + i y is two, (x, y). :func:`ravel` flattens params into the
real vector theta (per leaf in tree order: the real parts, then for complex leaves the
imaginary parts), and O_k(sigma) = d log psi(sigma) / d theta_k. Gradients are returned
as pytrees like params: dE/dx for real leaves and dE/dx + i dE/dy for complex leaves,
which is the steepest-ascent direction, so ``params - lr * grad`` (optax) descends, for
holomorphic and non-holomorphic models alike.

Weights: :func:`expect`, :func:`energy_gradient` and :func:`expect_and_grad` take
optional per-sample ``weights`` of the samples' leading shape. None means Monte Carlo
samples of |psi|^2 (equal weights 1/n, Markov-chain statistics); given, e.g. the Born
probabilities of a full sum over the basis (``nqs.sampler.sample_weights``), the
averages become exact weighted sums sum_i w_i (...), and samples with w_i = 0 (psi = 0)
are left out, so their infinite log-amplitudes never give NaN.

All public functions are jitted once per shape; ``model``, ``op``, ``hilbert`` and
``chunk_size`` are static (hashable; operators hash by identity).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nqs.connected import (
    all_log_psi,
    conn_chunk,
    connected_log_psi,
    needed_slots,
)
from nqs.sampler import sample_weights
from nqs.stats import Stats, statistics, weighted_statistics

# -- real parameter vector ------------------------------------------------------------


def n_real_params(params) -> int:
    """Number of real parameters: entries of real leaves + 2 x entries of complex."""
    leaves = jax.tree_util.tree_leaves(params)
    return sum(
        (2 if jnp.iscomplexobj(leaf) else 1) * int(np.size(leaf)) for leaf in leaves
    )


def ravel(params):
    """Flatten params into a real vector and return the inverse map.

    Args:
        params: pytree of real and complex arrays.
    Returns:
        theta: (n_real_params,) real vector (float64 with x64): per leaf in tree order
            the real parts, then for complex leaves the imaginary parts.
        unravel: function mapping an (n_real_params,) real vector back to a pytree like
            params (complex leaves rebuilt as x + i y, original dtypes).
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    layout = [(leaf.shape, leaf.dtype, jnp.iscomplexobj(leaf)) for leaf in leaves]
    parts = []
    for leaf, (_, _, is_complex) in zip(leaves, layout, strict=True):
        parts.append(jnp.ravel(jnp.real(leaf)))
        if is_complex:
            parts.append(jnp.ravel(jnp.imag(leaf)))
    theta = jnp.concatenate(parts) if parts else jnp.zeros(0)

    def unravel(vector: jax.Array):
        out, start = [], 0
        for shape, dtype, is_complex in layout:
            size = int(np.prod(shape, dtype=int))
            leaf = vector[start : start + size].reshape(shape)
            start += size
            if is_complex:
                leaf = leaf + 1j * vector[start : start + size].reshape(shape)
                start += size
            out.append(leaf.astype(dtype))
        return jax.tree_util.tree_unflatten(treedef, out)

    return theta, unravel


def _is_real_model(model, params, sigma) -> bool:
    """True if all params and the output of the model are real (static check)."""
    if any(jnp.iscomplexobj(x) for x in jax.tree_util.tree_leaves(params)):
        return False
    out = jax.eval_shape(model.apply, params, sigma)
    return not jnp.issubdtype(out.dtype, jnp.complexfloating)


def split_chunks(x: jax.Array, chunk_size: int, zero_pad: bool = False) -> jax.Array:
    """Rows of ``x`` (n, ...) as (n_chunks, chunk_size, ...) chunks, interleaved.

    Row i of chunk j is ``x[i * n_chunks + j]`` (after padding n up to a multiple of
    ``chunk_size`` with copies of the first row, or with zeros for ``zero_pad``, as
    weights and cotangents need). Interleaving keeps every chunk spread over the
    devices the rows are split over (``nqs.parallel``): each device evaluates its own
    rows of every chunk, chunk_size / n_devices at a time.
    """
    n = x.shape[0]
    n_chunks = -(-n // chunk_size)
    pad = n_chunks * chunk_size - n
    if pad:
        fill = jnp.zeros_like(x[:1]) if zero_pad else x[:1]
        x = jnp.concatenate([x, jnp.broadcast_to(fill, (pad,) + x.shape[1:])])
    return jnp.swapaxes(x.reshape((chunk_size, n_chunks) + x.shape[1:]), 0, 1)


def join_chunks(y: jax.Array, n: int) -> jax.Array:
    """Inverse of :func:`split_chunks`: (n_chunks, chunk_size, ...) -> (n, ...)."""
    y = jnp.swapaxes(y, 0, 1)
    return y.reshape((y.shape[0] * y.shape[1],) + y.shape[2:])[:n]


def _chunked(fn, sigma: jax.Array, chunk_size: int | None):
    """Apply fn: (m, n_sites) -> (m, ...) over the rows of sigma, chunk by chunk.

    Maps over :func:`split_chunks` with ``lax.map``, so only one chunk is live at a
    time.
    """
    n = sigma.shape[0]
    if chunk_size is None or chunk_size >= n:
        return fn(sigma)
    out = jax.lax.map(fn, split_chunks(sigma, chunk_size))
    return join_chunks(out, n)


# -- local estimators -----------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("model", "op", "chunk_size", "blocks"))
def local_estimates(
    model, params, sigma: jax.Array, op, chunk_size=None, blocks: int = 1
) -> jax.Array:
    """O_loc(sigma) = sum_sigma' <sigma|O|sigma'> psi(sigma') / psi(sigma).

    Slots with a zero matrix element contribute exactly zero (even if psi(sigma') = 0),
    and the model is evaluated only on the connected configurations with a nonzero
    element that differ from sigma (``nqs.connected``).

    Args:
        model: Flax module; apply maps (batch, n_sites) to (batch,) log psi.
        params: variables pytree of ``model``.
        sigma: (..., n_sites) int8 configurations with psi(sigma) != 0.
        op: operator with ``get_conn``.
        chunk_size: samples whose connected configurations the model sees at once
            (at most chunk_size x n_conn rows per call); None: no bound (the
            connected configurations of a sparse operator are still evaluated
            ``nqs.connected.BATCH`` rows at a time).
        blocks: the rows are split over this many devices (``nqs.connected``).
    Returns:
        (...) complex128 local estimates (always complex, also for real models).
    """
    batch, n_sites = sigma.shape[:-1], sigma.shape[-1]
    flat = sigma.reshape(-1, n_sites)
    sparse = getattr(op, "has_empty_slots", True)
    n_conn = jax.eval_shape(op.get_conn, flat[:1])[1].shape[-1]
    # the model sees at most chunk_size x n_conn rows at once, as a memory bound
    max_rows = None if chunk_size is None else chunk_size * n_conn

    def kernel(s):
        sigma_p, mels = op.get_conn(s)  # (m, n_conn, n_sites), (m, n_conn)
        # one model call site (compiled once) gives log psi(sigma) and psi(sigma')
        if sparse:
            rows = jnp.concatenate([s[:, None], sigma_p], axis=1)
            need = needed_slots(s, sigma_p, mels)
            need = jnp.concatenate([jnp.ones_like(need[:, :1]), need], axis=1)
            out = connected_log_psi(model, params, rows, need, blocks, max_rows)
            log_psi = out[:, 0]
            log_psi_p = jnp.where(need[:, 1:], out[:, 1:], log_psi[:, None])
        else:  # slot 0 is sigma itself (LocalOperator.get_conn)
            log_psi_p = all_log_psi(model, params, sigma_p)
            log_psi = log_psi_p[:, 0]
        log_ratio = log_psi_p - log_psi[:, None]
        terms = mels * jnp.exp(log_ratio.astype(complex))
        return jnp.sum(jnp.where(mels != 0, terms, 0), axis=-1)

    # sparse: model calls bounded by max_rows, chunks bound the connections held
    chunk = conn_chunk(len(flat), n_conn, n_sites, blocks) if sparse else chunk_size
    e_loc = _chunked(kernel, flat, chunk)
    return e_loc.astype(complex).reshape(batch)


@functools.partial(jax.jit, static_argnames=("model", "op", "chunk_size", "blocks"))
def expect(
    model, params, samples: jax.Array, op, chunk_size=None, weights=None, blocks=1
) -> tuple[Stats, jax.Array]:
    """Estimate of <O>: Monte Carlo over Markov-chain samples, or an exact weighted sum.

    Args:
        samples: (n_chains, n_per_chain, n_sites) int8 samples of |psi|^2 (or the
            whole basis, with ``weights``).
        weights: None (Monte Carlo: ``nqs.stats.statistics``), or (n_chains,
            n_per_chain) float64 probabilities summing to one: <O> = sum_i w_i
            O_loc(sigma_i) (``nqs.stats.weighted_statistics``: error 0, tau and
            R-hat NaN).
        (others as in :func:`local_estimates`)
    Returns:
        ``nqs.stats.Stats`` of the local estimates, and the (n_chains, n_per_chain)
        complex128 local estimates themselves (0 where the weight is 0).
    """
    e_loc = local_estimates(model, params, samples, op, chunk_size, blocks)
    if weights is None:
        return statistics(e_loc), e_loc
    e_loc = jnp.where(weights != 0, e_loc, 0)
    return weighted_statistics(e_loc, weights), e_loc


# -- Jacobian and gradients -----------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("model", "chunk_size"))
def jacobian(model, params, sigma: jax.Array, chunk_size=None) -> jax.Array:
    """O_k(sigma) = d log psi(sigma) / d theta_k for real parameters theta (see ravel).

    Args:
        model, params: as in :func:`local_estimates`.
        sigma: (n, n_sites) int8 configurations.
        chunk_size: rows differentiated at once; None for all.
    Returns:
        (n, n_real_params) complex128; float64 when the model is real (real params
        and real log psi), since then O is real.
    """
    theta, unravel = ravel(params)
    is_real = _is_real_model(model, params, sigma[:1])

    def log_psi_parts(t, s):
        out = model.apply(unravel(t), s[None])[0]
        return out if is_real else jnp.stack([jnp.real(out), jnp.imag(out)])

    per_sample = jax.vmap(jax.jacrev(log_psi_parts), in_axes=(None, 0))

    def kernel(s):
        jac = per_sample(theta, s)  # (m, n_real) or (m, 2, n_real)
        return jac if is_real else jac[:, 0] + 1j * jac[:, 1]

    return _chunked(kernel, sigma, chunk_size)


def safe_rows(sigma: jax.Array, weights: jax.Array) -> jax.Array:
    """Rows of zero weight replaced by the heaviest row.

    A row with w = 0 contributes nothing to a weighted sum, but a model evaluated
    where psi = 0 (log psi = -inf) may give infinite or NaN derivatives, and
    0 x inf = NaN; evaluating a finite row there instead keeps every sum finite.

    Args:
        sigma: (n, n_sites) int8 configurations.
        weights: (n,) float64 weights.
    Returns:
        (n, n_sites) int8.
    """
    heaviest = sigma[jnp.argmax(weights)]
    return jnp.where((weights != 0)[:, None], sigma, heaviest[None])


def _weighted_gradient(model, params, sigma, weights, chunk_size):
    """grad_theta 2 Re sum_s conj(w_s) log psi(s), returned as a params-like pytree.

    This equals 2 Re sum_s conj(O_k(s)) w_s, computed by one backward pass per chunk.
    """
    theta, unravel = ravel(params)
    n_sites = sigma.shape[-1]
    sigma = sigma.reshape(-1, n_sites)
    weights = jax.lax.stop_gradient(weights.reshape(-1))

    def loss(t, s, w):
        log_psi = model.apply(unravel(t), s)
        log_psi = jnp.where(w != 0, log_psi, 0)  # psi = 0 states carry zero weight
        return 2 * jnp.sum(jnp.real(jnp.conj(w) * log_psi))

    n = sigma.shape[0]
    if chunk_size is None or chunk_size >= n:
        return unravel(jax.grad(loss)(theta, sigma, weights))
    xs = (split_chunks(sigma, chunk_size), split_chunks(weights, chunk_size, True))

    def body(acc, x):
        return acc + jax.grad(loss)(theta, *x), None

    grad, _ = jax.lax.scan(body, jnp.zeros_like(theta), xs)
    return unravel(grad)


@functools.partial(jax.jit, static_argnames=("model", "chunk_size"))
def energy_gradient(
    model, params, sigma: jax.Array, e_loc: jax.Array, chunk_size=None, weights=None
):
    """Gradient of E = <H> with respect to the real parameters.

    G_k = 2 Re < conj(O_k - <O_k>) (E_loc - <E_loc>) >, computed as a vector-Jacobian
    product (O is never formed); valid for any Hermitian operator's local estimates.
    The averages are sample means (Monte Carlo), or with ``weights`` the weighted
    sums G_k = 2 Re sum_i w_i conj(O_ik) (E_i - sum_j w_j E_j) (the centring of O
    drops out since the weights sum to one).

    Args:
        model, params: as in :func:`local_estimates`.
        sigma: (..., n_sites) int8 samples of |psi|^2.
        e_loc: (...) local estimates at sigma.
        chunk_size: rows differentiated at once; None for all.
        weights: None (Monte Carlo) or (...) float64 probabilities summing to one.
    Returns:
        pytree like params: dE/dx (real leaves), dE/dx + i dE/dy (complex leaves).
    """
    e_loc = e_loc.reshape(-1)
    if weights is None:
        coeffs = (e_loc - jnp.mean(e_loc)) / e_loc.shape[0]
        return _weighted_gradient(model, params, sigma, coeffs, chunk_size)
    w = weights.reshape(-1)
    e_loc = jnp.where(w != 0, e_loc, 0)
    coeffs = w * (e_loc - jnp.sum(w * e_loc))
    sigma = safe_rows(sigma.reshape(-1, sigma.shape[-1]), w)
    return _weighted_gradient(model, params, sigma, coeffs, chunk_size)


@functools.partial(jax.jit, static_argnames=("model", "op", "chunk_size"))
def expect_and_grad(
    model, params, samples: jax.Array, op, chunk_size=None, weights=None
):
    """:func:`expect` and :func:`energy_gradient` of ``op`` in one call.

    Returns:
        (Stats, gradient pytree like params).
    """
    stats, e_loc = expect(model, params, samples, op, chunk_size, weights)
    grad = energy_gradient(model, params, samples, e_loc, chunk_size, weights)
    return stats, grad


# -- full summation over small spaces -------------------------------------------------


def full_sum_states(hilbert) -> jax.Array:
    """Every basis configuration, (n_states, n_sites) int8, in ``hilbert`` order."""
    return jnp.asarray(np.asarray(hilbert.all_states(), dtype=np.int8))


@functools.partial(jax.jit, static_argnames=("model", "hilbert"))
def full_sum_weights(model, params, hilbert) -> jax.Array:
    """Born probabilities |psi(sigma)|^2 / sum |psi|^2 over ``full_sum_states``.

    Returns:
        (n_states,) float64, summing to one.
    """
    log_psi = model.apply(params, full_sum_states(hilbert))
    return jax.nn.softmax(2 * jnp.real(log_psi))


@functools.partial(jax.jit, static_argnames=("model", "hilbert", "op"))
def full_sum_expect(model, params, hilbert, op) -> jax.Array:
    """Exact <psi|O|psi> / <psi|psi> by enumerating ``hilbert.all_states()``.

    Returns:
        () complex128 (real part is the expectation of a Hermitian operator).
    """
    states = full_sum_states(hilbert)
    probs = full_sum_weights(model, params, hilbert)
    return expect(model, params, states, op, None, probs)[0].mean


@functools.partial(jax.jit, static_argnames=("model", "hilbert", "op"))
def full_sum_expect_and_grad(model, params, hilbert, op):
    """Exact <O> and its gradient by enumeration (same convention as energy_gradient).

    G_k = 2 Re sum_sigma p(sigma) conj(O_k(sigma)) (E_loc(sigma) - <O>), for Hermitian
    O, with p the Born probabilities.

    Returns:
        () complex128 expectation and a gradient pytree like params.
    """
    states = full_sum_states(hilbert)
    probs = full_sum_weights(model, params, hilbert)
    stats, grad = expect_and_grad(model, params, states, op, None, probs)
    return stats.mean, grad


# -- convenience container ------------------------------------------------------------


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["params", "sampler_state"],
    meta_fields=["model", "sampler"],
)
@dataclasses.dataclass(frozen=True)
class VariationalState:
    """A model, its sampler, parameters and chains, for scripts and notebooks.

    A pytree (params and sampler_state are leaves; model and sampler are static), so
    it can pass through ``jax.jit``. Methods return a new state instead of mutating.
    Drivers use the functions of this module directly.

    Attributes:
        model: Flax module.
        sampler: ``nqs.sampler`` sampler.
        params: variables pytree of ``model``.
        sampler_state: ``nqs.sampler.SamplerState``.
    """

    model: Any
    sampler: Any
    params: Any
    sampler_state: Any

    @classmethod
    def create(cls, model, sampler, key: jax.Array, params=None) -> VariationalState:
        """Initialise params (unless given) with ``model.init`` and the chains."""
        k_params, k_chains = jax.random.split(key)
        if params is None:
            sigma = sampler.hilbert.random_states(k_params, 1)
            params = model.init(k_params, sigma)
        return cls(model, sampler, params, sampler.init(model, params, k_chains))

    def sample(self) -> tuple[jax.Array, VariationalState]:
        """(n_chains, n_samples_per_chain, n_sites) int8 samples and the new state."""
        samples, chain = self.sampler.sample(
            self.model, self.params, self.sampler_state
        )
        return samples, dataclasses.replace(self, sampler_state=chain)

    def weights(self, samples: jax.Array) -> jax.Array | None:
        """Per-sample weights of ``samples`` (``nqs.sampler.sample_weights``)."""
        return sample_weights(self.sampler, self.model, self.params, samples)

    def expect(self, op, chunk_size=None) -> tuple[Stats, VariationalState]:
        """<op> from fresh samples (exact with a full-sum sampler); the new state."""
        samples, new = self.sample()
        stats, _ = expect(
            self.model, self.params, samples, op, chunk_size, self.weights(samples)
        )
        return stats, new

    def expect_and_grad(self, op, chunk_size=None):
        """(Stats, gradient pytree like params, new state) from fresh samples."""
        samples, new = self.sample()
        weights = self.weights(samples)
        stats, grad = expect_and_grad(
            self.model, self.params, samples, op, chunk_size, weights
        )
        return stats, grad, new
