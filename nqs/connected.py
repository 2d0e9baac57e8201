"""log ψ on the configurations an operator connects samples to, evaluated only where
a local estimate needs it.

For a sample σ, ``op.get_conn`` gives n_conn slots (σ'_k, ⟨σ|O|σ'_k⟩). A slot needs
the model only when its matrix element is nonzero and σ'_k ≠ σ: the diagonal slot
(σ' = σ) has the ratio ψ(σ')/ψ(σ) = 1 exactly, and slots with a zero element (padding,
or a Heisenberg bond of two parallel spins) contribute nothing. On the 4×4 J1–J2
model, for instance, only about 55–60% of the 65 slots of a sample near the ground
state are needed.

Operators without empty slots (``LocalOperator.has_empty_slots`` False, as for a
transverse field) need every slot but the diagonal one: :func:`off_diagonal_log_psi`
evaluates those directly. Otherwise the needed rows are compacted to the front of
their block of rows and the model runs on them ``batch`` rows per block at a time, in
a ``lax.while_loop`` whose trip count is the number of batches the fullest block
needs: one compiled body, and a cost that follows the number of needed rows rather
than n_conn. With the rows split over D devices (``nqs.parallel``), blocks = D makes
every device compact and evaluate its own rows: the block axis is the split one and
every gather stays inside its block; only the trip count (a scalar maximum) is
shared.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "BATCHES_PER_BLOCK",
    "MIN_BATCH",
    "connected_log_psi",
    "needed_slots",
    "off_diagonal_log_psi",
]

#: The rows of a block are evaluated in about this many batches, so at most 1/16 of
#: a block's rows is evaluated without being needed (the last batch's padding).
BATCHES_PER_BLOCK = 16
#: Smallest batch (rows per block per model call): against loop overhead, and large
#: enough for efficient products in the model (on CPU the GCNN's batched Fourier
#: products take ~40% less time per row at 1024 rows than at 520).
MIN_BATCH = 1024


def needed_slots(sigma: jax.Array, sigma_p: jax.Array, mels: jax.Array) -> jax.Array:
    """Slots whose ψ(σ') a local estimate needs.

    Args:
        sigma: (m, n_sites) int8 configurations.
        sigma_p: (m, n_conn, n_sites) int8 connected configurations.
        mels: (m, n_conn) matrix elements.
    Returns:
        (m, n_conn) bool: mel ≠ 0 and σ' ≠ σ.
    """
    return (mels != 0) & jnp.any(sigma_p != sigma[:, None, :], axis=-1)


def _batch_size(n_rows: int) -> int:
    return min(n_rows, max(-(-n_rows // BATCHES_PER_BLOCK), MIN_BATCH))


def connected_log_psi(
    model, params, sigma_p: jax.Array, need: jax.Array, fill: jax.Array, blocks: int = 1
) -> jax.Array:
    """log ψ(σ'_k) where ``need``, ``fill`` (per sample) elsewhere.

    Inside a jitted function (not reverse-differentiable: the loop's trip count
    depends on the data).

    Args:
        model: Flax module; apply maps (b, n_sites) int8 to (b,) log ψ.
        params: variables pytree of ``model``.
        sigma_p: (m, n_conn, n_sites) int8 connected configurations.
        need: (m, n_conn) bool slots to evaluate (:func:`needed_slots`).
        fill: (m,) the value of the other slots (log ψ(σ), the model's dtype).
        blocks: blocks of consecutive samples compacted separately (module
            docstring); 1 when it does not divide m.
    Returns:
        (m, n_conn) log ψ, dtype of ``fill``.
    """
    m, n_conn, n_sites = sigma_p.shape
    if m % blocks:
        blocks = 1
    n_rows = m // blocks * n_conn
    batch = _batch_size(n_rows)
    n_batches = -(-n_rows // batch)
    rows = sigma_p.reshape(blocks, n_rows, n_sites)
    need = need.reshape(blocks, n_rows)
    # positions of the needed rows first (then index 0, harmless), padded to batches
    order = jax.vmap(lambda x: jnp.nonzero(x, size=n_rows, fill_value=0)[0])(need)
    order = jnp.pad(order, ((0, 0), (0, n_batches * batch - n_rows)))
    n_trips = (jnp.max(jnp.sum(need, axis=1)) + batch - 1) // batch

    def body(carry):
        i, out = carry
        take = jax.lax.dynamic_slice_in_dim(order, i * batch, batch, axis=1)
        x = jax.vmap(lambda r, t: r[t])(rows, take)  # (blocks, batch, n_sites)
        y = model.apply(params, x.reshape(-1, n_sites)).astype(out.dtype)
        out = jax.lax.dynamic_update_slice_in_dim(
            out, y.reshape(blocks, batch), i * batch, axis=1
        )
        return i + 1, out

    out = jnp.zeros((blocks, n_batches * batch), fill.dtype)
    _, out = jax.lax.while_loop(lambda c: c[0] < n_trips, body, (0, out))
    where = jnp.maximum(jnp.cumsum(need, axis=1) - 1, 0)  # slot -> its compact row
    values = jnp.take_along_axis(out, where, axis=1)
    fill = jnp.broadcast_to(fill[:, None], (m, n_conn)).reshape(blocks, n_rows)
    return jnp.where(need, values, fill).reshape(m, n_conn)


def off_diagonal_log_psi(
    model, params, sigma_p: jax.Array, fill: jax.Array
) -> jax.Array:
    """log ψ(σ'_k) for every slot but the diagonal one (slot 0, σ itself: ``fill``).

    Args:
        sigma_p: (m, n_conn, n_sites) int8 connected configurations, slot 0 = σ
            (``LocalOperator.get_conn``).
        fill: (m,) log ψ(σ).
    Returns:
        (m, n_conn) log ψ, dtype of ``fill``.
    """
    m, n_conn, n_sites = sigma_p.shape
    off = model.apply(params, sigma_p[:, 1:].reshape(-1, n_sites))
    return jnp.concatenate(
        [fill[:, None], off.reshape(m, n_conn - 1).astype(fill.dtype)], 1
    )
